"""The Analyze widget's result view: the probability table and the lines under it.

The words come from ``_panel`` (no Qt there, tested directly); this only puts them on screen
and keeps the labels at their full wrapped height.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem

from napari_pathreview.widgets import _panel
from napari_pathreview.widgets._common import fit_height

#: Rows the table shows without scrolling (a card with more classes scrolls beyond this).
VISIBLE_ROWS = 8


class ResultView:
    """Class probabilities, the decision rule, caveats and the card's test metrics."""

    def __init__(self) -> None:
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["class", "probability"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self._fit_table()
        self.decision, self.caveats, self.metrics = QLabel(""), QLabel(""), QLabel("")
        self.caveats.setStyleSheet("color: #e0a030;")
        for label in (self.decision, self.caveats, self.metrics):
            label.setWordWrap(True)

    @property
    def widgets(self) -> tuple[Any, ...]:
        """(table, decision, caveats, metrics), top to bottom."""
        return self.table, self.decision, self.caveats, self.metrics

    def fill(self, result: Any) -> None:
        """Show an ``AnalysisResult``."""
        self._show(result.probabilities, _panel.result_texts(result))

    def fill_restored(self, record: Any, card: Any) -> None:
        """Show a prediction restored from earlier (``_recall``), labelled as such."""
        self._show(record["probabilities"], _panel.restored_texts(record, card))

    def _show(self, probs: Any, texts: tuple[str, str, str]) -> None:
        self.table.setRowCount(len(probs))
        for row, (name, value) in enumerate(probs.items()):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            self.table.setItem(row, 1, QTableWidgetItem(f"{float(value):.3f}"))
        self._fit_table()
        for label, text in zip(self.widgets[1:], texts, strict=True):
            label.setText(text)
        fit_height(*self.widgets)

    def clear(self) -> None:
        """Show nothing: no stale numbers stay on screen."""
        self.table.setRowCount(0)
        self._fit_table()
        for label in self.widgets[1:]:
            label.setText("")
        fit_height(*self.widgets)

    def _fit_table(self) -> None:
        """Size the table to its rows: a fixed 110 px cut the third class of a 3-class model
        and hid it behind a scroll bar."""
        table = self.table
        rows = min(table.rowCount(), VISIBLE_ROWS)
        header = table.horizontalHeader().sizeHint().height()
        body = sum(table.rowHeight(r) for r in range(rows))
        table.setMaximumHeight(header + body + 2 * table.frameWidth())
