"""The PathReview dock: Analyze and Review as tabs of one scrollable panel, plus sessions.

Two separate docks stack to ~1,400 px; on a 1366×768 laptop Save and the queue end up off
screen. One tabbed dock of fixed width fits (each tab scrolls when it must), does not
widen when results with long names arrive, and the Review tab's queue drives the Analyze
tab (it follows the queue's image and can run on each). "Save session…" writes the
workspace (open images, ROI and CAM layers, queue position, settings) to a project file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_pathreview.widgets import (
    _analyze_settings,
    _review_settings,
    _session,
    _session_layers,
)
from napari_pathreview.widgets._colorbars import follow_while_docked
from napari_pathreview.widgets._notify import notify_exception, show_info, show_warning
from napari_pathreview.widgets._session_keys import SkippedSettings
from napari_pathreview.widgets.analyze import AnalyzeWidget
from napari_pathreview.widgets.review import ReviewWidget

logger = logging.getLogger(__name__)

#: The dock's width in pixels: fits a 1366-px screen beside a usable canvas.
DOCK_WIDTH = 400
ANALYZE_TAB, REVIEW_TAB = 0, 1


def _scrolling(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


class PathReviewWorkspace(QWidget):
    """Analyze and Review in one tabbed, scrollable dock of stable width.

    Args:
        napari_viewer: the viewer (napari's proxy when opened from the Plugins menu).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.analyze = AnalyzeWidget(napari_viewer)
        self.review = ReviewWidget(napari_viewer)
        self.tabs = QTabWidget()
        self.tabs.addTab(_scrolling(self.analyze), "Analyze")
        self.tabs.addTab(_scrolling(self.review), "Review")
        self.save_session_button = QPushButton("Save session…")
        self.open_session_button = QPushButton("Open session…")
        self.save_session_button.clicked.connect(self._choose_save)
        self.open_session_button.clicked.connect(self._choose_open)
        row = QHBoxLayout()
        row.addWidget(self.save_session_button)
        row.addWidget(self.open_session_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(row)
        self.setFixedWidth(DOCK_WIDTH)
        for inner in (self.analyze, self.review):
            inner.setMaximumWidth(DOCK_WIDTH - 24)  # room for the vertical scroll bar
        follow_while_docked(self, self.analyze.colour_bars)  # the dock closed is this one
        self.review.image_opened.connect(self._queue_image_opened)
        # an image the queue comes back to gets its earlier prediction again (widgets._recall)
        self.review.prediction_memory = self.analyze.memory
        self.analyze.stored_prediction = self.review.stored_prediction

    def _queue_image_opened(self, name: str) -> None:
        """The queue moved on: Analyze shows the same image (and runs it if asked to)."""
        self.analyze.follow(name)

    # --------------------------------------------------------------- sessions
    def _choose_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save review session", "review.session.json", "Session (*.json)"
        )
        if path:
            self.save_session(path)

    def _choose_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open review session", "", "Session (*.json)")
        if path:
            self.restore_session(path)

    def session_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The workspace as a JSON-able document and its arrays."""
        layers, arrays = _session.capture_layers(self.viewer)
        review, queue = _review_settings.capture(self.review)
        state = {
            "layers": layers,
            "queue": queue,
            "analyze": _analyze_settings.capture(self.analyze),
            "review": review,
            "tab": int(self.tabs.currentIndex()),
        }
        return state, arrays

    def save_session(self, path: str | Path) -> Path | None:
        """Write the session file; returns its path (None on failure, notified)."""
        try:
            state, arrays = self.session_state()
            written = _session.write_session(path, state, arrays)
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Save session")
            return None
        show_info(f"Session saved to {written}")
        return written

    def restore_session(self, path: str | Path) -> bool:
        """Reopen a saved session in this viewer; returns whether it worked."""
        skipped = SkippedSettings()
        try:
            document, arrays = _session.read_session(path)
            _session_layers.restore(self.viewer, document.get("layers", []), arrays, skipped)
            self._restore_settings(document, skipped)
            self.analyze.pixel_size.refresh()  # a restored size is set before its image is chosen
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Open session")
            return False
        if skipped.problems:
            show_warning(skipped.message(path))
        else:
            show_info(f"Session restored from {path}")
        return True

    def _restore_settings(self, document: dict[str, Any], skipped: SkippedSettings) -> None:
        """Every dock setting, key by key (``_session_keys``), in the order they depend on
        one another: the reviewer, Analyze's settings, then the queue (it opens an image,
        which Analyze follows and may run on)."""
        form = _review_settings.restore_form(self.review, document, skipped)
        analyze = skipped.section("analyze", document, "analyze")
        _analyze_settings.restore(self.analyze, analyze, skipped)
        _review_settings.restore_place(self.review, document, form, skipped)
        skipped.put("tab", document, "tab", self._show_tab)
        skipped.known(document, *_session.DOCUMENT_KEYS)
        skipped.unknown("", document)

    def _show_tab(self, index: Any) -> None:
        if index not in (ANALYZE_TAB, REVIEW_TAB) or isinstance(index, bool):
            raise ValueError(
                f"must be {ANALYZE_TAB} (Analyze) or {REVIEW_TAB} (Review), got {index!r}"
            )
        self.tabs.setCurrentIndex(index)
