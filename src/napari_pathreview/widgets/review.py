"""The Review dock widget: record the pathologist's judgement, walk a work queue, export.

The form (label from the model's classes, agree/disagree, confidence, notes, ROI from a
Shapes layer) is written to the :class:`~napari_pathreview.review.ReviewStore` with the
prediction the Analyze widget left in the image layer's metadata. A save that fails
(locked database, bad input) leaves the form untouched, so nothing typed is lost. Queue
progress is read back from the store, so a reviewer resumes where they stopped.
"""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    LineEdit,
    RadioButtons,
    TextEdit,
)
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets._notify import notify_exception, show_info
from napari_pathreview.widgets._queue import WorkQueue, reviewed_hashes
from napari_pathreview.widgets.analyze import compact, layer_modality

logger = logging.getLogger(__name__)

NO_ROI = "(no ROI)"
DEFAULT_CLASSES = {
    "histology": ("benign", "malignant"),
    "mammogram": ("normal", "benign", "malignant"),
}
NEXT_KEY, PREVIOUS_KEY = "Alt-Right", "Alt-Left"


def _meta(layer: Any) -> dict[str, Any]:
    return dict((getattr(layer, "metadata", {}) or {}).get("pathreview") or {})


class ReviewWidget(QWidget):
    """Agree or disagree with the model on the current image, and move through a queue.

    Args:
        napari_viewer: the viewer this widget is docked in.
        db_url: review database (default: ``$PATHREVIEW_DB_URL`` or the home SQLite file).
        busy_timeout_s: how long a save waits for a locked database before giving up.
    """

    def __init__(
        self, napari_viewer: Any, db_url: str | None = None, busy_timeout_s: float = 2.0
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.db_url = db_url
        self.busy_timeout_s = busy_timeout_s
        self.queue: WorkQueue | None = None
        self.last_review_id: int | None = None
        self._store: Any = None
        self._queue_layers: list[Any] = []
        self._build_form()
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        self.save_button = QPushButton("Save review")
        self.save_button.clicked.connect(self.save)
        layout.addWidget(self.save_button)
        layout.addWidget(self._build_queue_box())
        layout.addWidget(self._build_disagreement_box())
        layout.addStretch(1)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self.reset_choices)
        self.viewer.bind_key(NEXT_KEY, lambda _v: self.next_item(), overwrite=True)
        self.viewer.bind_key(PREVIOUS_KEY, lambda _v: self.previous_item(), overwrite=True)
        self.reset_choices()

    # ----------------------------------------------------------------- layout
    def _build_form(self) -> None:
        self.image_combo = ComboBox(label="Image", choices=self._image_names)
        self.reviewer = LineEdit(label="Reviewer", value=getpass.getuser())
        self.model_line = LineEdit(label="Model", value="")
        self.model_line.enabled = False
        self.label = ComboBox(label="Label", choices=self._label_choices)
        self.agreement = RadioButtons(
            label="Model", choices=("agree", "disagree"), value="agree", orientation="horizontal"
        )
        self.confidence = FloatSlider(label="Confidence", min=0.0, max=1.0, step=0.05, value=0.8)
        self.notes = TextEdit(label="Notes", value="")
        self.roi_combo = ComboBox(label="ROI", choices=self._roi_names)
        self.form = Container(
            widgets=[
                self.image_combo,
                self.reviewer,
                self.model_line,
                self.label,
                self.agreement,
                self.confidence,
                self.notes,
                self.roi_combo,
            ]
        )
        compact(self.image_combo, self.label, self.roi_combo)
        self.image_combo.changed.connect(self._image_changed)
        self.label.changed.connect(self._suggest_agreement)
        self.reviewer.changed.connect(self.refresh_progress)

    def _build_queue_box(self) -> QGroupBox:
        box = QGroupBox("Work queue")
        layout = QVBoxLayout(box)
        open_row, nav_row = QHBoxLayout(), QHBoxLayout()
        for text, slot in (("Open folder…", self._choose_folder), ("Open CSV…", self._choose_csv)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            open_row.addWidget(button)
        self.previous_button = QPushButton("◀ Previous (Alt+←)")
        self.next_button = QPushButton("Next (Alt+→) ▶")
        self.previous_button.clicked.connect(self.previous_item)
        self.next_button.clicked.connect(self.next_item)
        nav_row.addWidget(self.previous_button)
        nav_row.addWidget(self.next_button)
        self.progress_label = QLabel("no queue open")
        layout.addLayout(open_row)
        layout.addLayout(nav_row)
        layout.addWidget(self.progress_label)
        return box

    def _build_disagreement_box(self) -> QGroupBox:
        box = QGroupBox("Disagreements with the model")
        layout = QVBoxLayout(box)
        self.disagreements = QListWidget()
        self.disagreements.setMaximumHeight(120)
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

    # ---------------------------------------------------------------- choices
    def _image_names(self, _widget: Any = None) -> list[str]:
        return [
            layer.name
            for layer in self.viewer.layers
            if type(layer).__name__ == "Image" and _meta(layer).get("kind") is None
        ]

    def _roi_names(self, _widget: Any = None) -> list[str]:
        return [
            NO_ROI,
            *(layer.name for layer in self.viewer.layers if type(layer).__name__ == "Shapes"),
        ]

    @property
    def image_layer(self) -> Any:
        name = self.image_combo.value
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def prediction(self) -> dict[str, Any] | None:
        """The Analyze widget's last prediction on the current image, if any."""
        layer = self.image_layer
        return _meta(layer).get("prediction") if layer is not None else None

    def classes(self) -> list[str]:
        """The label choices: the predicting model's classes, else the modality's usual ones."""
        prediction = self.prediction()
        if prediction and prediction.get("classes"):
            return list(prediction["classes"])
        layer = self.image_layer
        if layer is None:
            return []
        return list(DEFAULT_CLASSES[layer_modality(layer)])

    def _label_choices(self, _widget: Any = None) -> list[str]:
        return self.classes()

    def reset_choices(self, *_: Any) -> None:
        """Refresh the pickers (layers added, removed, or a new prediction).

        The label and agreement are only re-suggested when the image or its prediction
        changed, so adding an ROI layer never overwrites what the reviewer chose.
        """
        self.form.reset_choices()
        self._image_changed()

    def _image_changed(self, *_: Any) -> None:
        prediction = self.prediction()
        key = (self.image_combo.value, repr(prediction and prediction.get("probabilities")))
        if key == getattr(self, "_shown_key", None):
            return
        self._shown_key = key
        if tuple(self.label.choices) != tuple(self.classes()):
            self.label.choices = ()  # magicgui appends new items; rebuild in class order
            self.label.choices = self._label_choices
        if prediction:
            self.model_line.value = (
                f"{prediction['model_name']}@{prediction['model_version']}"
                f" said {prediction['label']}"
            )
            if prediction["label"] in self.label.choices:
                self.label.value = prediction["label"]
        else:
            self.model_line.value = "no prediction yet (press Run in Analyze)"
        self._suggest_agreement()

    def _suggest_agreement(self, *_: Any) -> None:
        prediction = self.prediction()
        if prediction:
            same = self.label.value == prediction["label"]
            self.agreement.value = "agree" if same else "disagree"

    # ------------------------------------------------------------------ store
    def store(self) -> Any:
        """The review store, opened on first use (a failure to open is retried next time)."""
        if self._store is None:
            from napari_pathreview.review import ReviewStore

            self._store = ReviewStore(self.db_url, busy_timeout_s=self.busy_timeout_s, retries=1)
        return self._store

    def _roi_geojson(self) -> dict[str, Any] | None:
        name = self.roi_combo.value
        if not name or name == NO_ROI or name not in self.viewer.layers:
            return None
        from napari_pathreview.io.geojson import rois_from_shapes, rois_to_geojson

        layer = self.viewer.layers[name]
        if len(layer.data) == 0:
            return None
        return rois_to_geojson(rois_from_shapes(layer.data, layer.shape_type))

    def _gather(self) -> dict[str, Any]:
        layer = self.image_layer
        if layer is None:
            raise InvalidInputError("choose the image you are reviewing (open one first).")
        meta = _meta(layer)
        source = meta.get("source_path") or getattr(layer.source, "path", None)
        if not source or not Path(source).is_file():
            raise InvalidInputError(
                f"layer {layer.name!r} has no image file on disk; open the image from a file "
                "(File ▸ Open) so the review can be keyed by its contents."
            )
        reviewer = (self.reviewer.value or "").strip()
        if not reviewer:
            raise InvalidInputError("type your name in Reviewer before saving.")
        if not self.label.value:
            raise InvalidInputError("choose a label before saving.")
        return {
            "layer": layer,
            "source": Path(source),
            "modality": layer_modality(layer),
            "reviewer": reviewer,
            "patient_id": meta.get("patient_id"),
        }

    def save(self, *_: Any) -> int | None:
        """Write the review (and the prediction it judges); returns its id, None on failure."""
        try:
            form = self._gather()
            review_id = self._write(form)
        except Exception as error:  # noqa: BLE001 - notified; the form keeps its contents
            notify_exception(error, "Review not saved (your entries are kept)")
            return None
        self.last_review_id = review_id
        show_info(f"Review saved ({form['reviewer']}: {self.label.value}).")
        self.notes.value = ""
        self.refresh_progress()
        self.refresh_disagreements()
        return review_id

    def _write(self, form: dict[str, Any]) -> int:
        store, layer = self.store(), form["layer"]
        patient = form["patient_id"]
        sha = store.add_image(
            form["source"],
            form["modality"],
            metadata={"layer": layer.name},
            patient_id=str(patient) if patient else None,
        )
        prediction = self.prediction()
        prediction_id = None
        if prediction:
            prediction_id = prediction.get("store_id", {}).get(self.db_key())
            if prediction_id is None:
                prediction_id = store.add_prediction(
                    sha,
                    prediction["model_name"],
                    prediction["model_version"],
                    prediction["probabilities"],
                    prediction["settings"],
                    label=prediction["label"],
                )
                prediction.setdefault("store_id", {})[self.db_key()] = prediction_id
                meta = _meta(layer)
                meta["prediction"] = prediction
                layer.metadata["pathreview"] = meta
        review_id = store.add_review(
            sha,
            form["reviewer"],
            str(self.label.value),
            self.agreement.value == "agree",
            confidence=float(self.confidence.value),
            notes=str(self.notes.value or ""),
            roi_geojson=self._roi_geojson(),
            prediction_id=prediction_id,
            allowed_labels=self.classes(),
        )
        if self.queue is not None:
            self.queue.mark_reviewed(sha)
        return review_id

    def db_key(self) -> str:
        return str(self.store().url)

    # ------------------------------------------------------------------ queue
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to review")
        if folder:
            self.load_queue(folder)

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CSV with a 'path' column", "", "CSV (*.csv)")
        if path:
            self.load_queue(path)

    def load_queue(self, source: str | Path) -> WorkQueue | None:
        """Open a queue over a folder or CSV and show the first image this reviewer has not done."""
        try:
            done = reviewed_hashes(self.store().reviews(reviewer=self.reviewer.value.strip()))
            self.queue = WorkQueue.from_source(source, reviewed=done)
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Work queue")
            return None
        self._open_current()
        return self.queue

    def refresh_progress(self, *_: Any) -> None:
        """Re-read this reviewer's reviews and update '12 of 80 reviewed'."""
        if self.queue is None:
            return
        try:
            self.queue.set_reviewed(
                reviewed_hashes(self.store().reviews(reviewer=self.reviewer.value.strip()))
            )
        except Exception as error:  # noqa: BLE001 - notified; the old count stays
            notify_exception(error, "Work queue")
        self._show_progress()

    def _show_progress(self) -> None:
        queue = self.queue
        if queue is None:
            return
        mark = " ✓" if queue.is_reviewed(queue.current) else ""
        self.progress_label.setText(
            f"{queue.progress_text()} · {queue.position_text()}: {queue.current.name}{mark}"
        )

    def next_item(self) -> Path | None:
        """Show the next image of the queue (Alt+→)."""
        if self.queue is None:
            return None
        self.queue.next()
        return self._open_current()

    def previous_item(self) -> Path | None:
        """Show the previous image of the queue (Alt+←)."""
        if self.queue is None:
            return None
        self.queue.previous()
        return self._open_current()

    def _open_current(self) -> Path | None:
        queue = self.queue
        path = queue.current
        for layer in self._queue_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        try:
            self._queue_layers = list(self.viewer.open(path, plugin="napari-pathreview"))
        except Exception as error:  # noqa: BLE001 - notified; the reviewer can skip on
            self._queue_layers = []
            notify_exception(error, f"Cannot open {path.name}; press Next to skip it")
            self._show_progress()
            return path
        images = [layer for layer in self._queue_layers if type(layer).__name__ == "Image"]
        self.reset_choices()
        if images:
            self.image_combo.value = images[0].name
        self._show_progress()
        return path

    # ---------------------------------------------------------- disagreements
    def refresh_disagreements(self, *_: Any) -> list[Any]:
        """List the reviews that disagree with the model (this reviewer's, or everyone's)."""
        reviewer = self.reviewer.value.strip() if self.only_mine.value else None
        try:
            records = self.store().reviews(reviewer=reviewer, disagreements_only=True)
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Disagreements")
            return []
        self.disagreements.clear()
        for record in records:
            said = f"{record.model} said {record.predicted_label}" if record.model else "no model"
            self.disagreements.addItem(
                f"{Path(record.image_path).name}: {record.label} ({said}) — {record.reviewer}"
            )
        return records

    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Training manifest", "disagreements.csv", "CSV (*.csv)"
        )
        if path:
            self.export_disagreements(path)

    def export_disagreements(self, path: str | Path, weight: float = 2.0) -> Path | None:
        """Write the listed disagreements as a training manifest (``pathreview train`` reads it)."""
        reviewer = self.reviewer.value.strip() if self.only_mine.value else None
        try:
            written = self.store().export_manifest(
                path, disagreement_weight=weight, reviewer=reviewer, disagreements_only=True
            )
        except Exception as error:  # noqa: BLE001 - notified
            notify_exception(error, "Export")
            return None
        show_info(f"Disagreements exported to {written}")
        return Path(written)
