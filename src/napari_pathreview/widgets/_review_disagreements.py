"""The Review widget's disagreement list: reviews that disagree with the model, and export.

A mixin of :class:`~napari_pathreview.widgets.review.ReviewWidget` (it uses the widget's
reviewer, store and queue navigation). The list and the export read the store in the store
thread; a clicked entry opens its image, moving the queue there when the queue holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from napari_pathreview.review.manifest import DEFAULT_DISAGREEMENT_WEIGHT
from napari_pathreview.widgets._notify import notify_exception, show_info
from napari_pathreview.widgets._store_thread import wait_in_store_thread


class DisagreementList:
    """The disagreement list and its export for the Review widget (a mixin)."""

    def init_disagreements(self, layout: QVBoxLayout) -> None:
        layout.addWidget(self._build_disagreement_box())

    def _build_disagreement_box(self) -> QGroupBox:
        box = QGroupBox("Disagreements with the model (click to open)")
        layout = QVBoxLayout(box)
        self.disagreements = QListWidget()
        self.disagreements.setMaximumHeight(100)
        self.disagreements.itemClicked.connect(self.open_disagreement)
        self.only_mine = CheckBox(text="only mine", value=True)
        self.only_mine.changed.connect(self.refresh_disagreements)
        row = QHBoxLayout()
        refresh, export = QPushButton("Refresh"), QPushButton("Export for retraining…")
        refresh.clicked.connect(self.refresh_disagreements)
        export.clicked.connect(self._choose_export)
        row.addWidget(refresh)
        row.addWidget(export)
        layout.addWidget(self.only_mine.native)
        layout.addWidget(self.disagreements)
        layout.addLayout(row)
        return box

    def refresh_disagreements(self, *_: Any) -> list[Any]:
        """List the reviews that disagree with the model (this reviewer's, or everyone's).

        Each reviewer's latest review of an image only, as the export writes them: an edited
        review is listed once, and a disagreement later corrected to agreement not at all.
        """
        reviewer = self.reviewer.value.strip() if self.only_mine.value else None
        try:
            records = wait_in_store_thread(
                lambda: self.store().latest_reviews(reviewer=reviewer, disagreements_only=True)
            )
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Disagreements")
            return []
        self.disagreements.clear()
        for record in records:
            said = f"{record.model} said {record.predicted_label}" if record.model else "no model"
            item = QListWidgetItem(
                f"{Path(record.image_path).name}: {record.label} ({said}) — {record.reviewer}"
            )
            item.setData(Qt.ItemDataRole.UserRole, str(record.image_path))
            item.setToolTip(str(record.image_path))
            self.disagreements.addItem(item)
        return records

    def open_disagreement(self, item: QListWidgetItem) -> Any:
        """Open the image of a clicked disagreement (moving the queue there when it holds it)."""
        path = Path(str(item.data(Qt.ItemDataRole.UserRole)))
        if not path.is_file():
            notify_exception(FileNotFoundError(f"{path} no longer exists"), "Disagreement")
            return None
        if self.saving or not self.confirm_leave():
            return None
        if self.queue is not None and path in self.queue.paths:
            self.queue.index = self.queue.paths.index(path)
        return self.open_path(path)

    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Training manifest", "disagreements.csv", "CSV (*.csv)"
        )
        if path:
            self.export_disagreements(path)

    def export_disagreements(
        self, path: str | Path, weight: float = DEFAULT_DISAGREEMENT_WEIGHT
    ) -> Path | None:
        """Write the listed disagreements as a training manifest (``pathreview train`` reads it)."""
        reviewer = self.reviewer.value.strip() if self.only_mine.value else None
        try:
            written = wait_in_store_thread(
                lambda: self.store().export_manifest(
                    path, disagreement_weight=weight, reviewer=reviewer, disagreements_only=True
                )
            )
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Export")
            return None
        show_info(f"Disagreements exported to {written}")
        return Path(written)
