"""The Review dock widget: record the pathologist's judgement, walk a work queue, export.

The form (label from the model's classes, agree/disagree, confidence, notes, ROI from a
Shapes layer) is written to the :class:`~napari_pathreview.review.ReviewStore` with the
prediction the Analyze widget left in the image layer's metadata. The form belongs to one
image: it is reset (or filled from that image's saved review) whenever the image changes,
only that image's ROI layers are offered, and unsaved entries are never carried over or
dropped silently. A save that fails (locked database, bad input) leaves the form untouched.
Every database call runs in the store thread (:mod:`~napari_pathreview.widgets._store_thread`):
a locked file or a silent PostgreSQL server makes Save wait, never the viewer.
Queue navigation and loading in a worker live in :mod:`~napari_pathreview.widgets._review_nav`;
the disagreement list and its export in :mod:`~napari_pathreview.widgets._review_disagreements`;
reading the form and writing it to the store in :mod:`~napari_pathreview.widgets._review_save`.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FloatSlider, LineEdit, RadioButtons, TextEdit
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QPushButton, QVBoxLayout, QWidget

from napari_pathreview.widgets import _recall, _results, _review_roi
from napari_pathreview.widgets import _review_state as state
from napari_pathreview.widgets._hole_outlines import show_holes
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._notify import notify_exception
from napari_pathreview.widgets._review_disagreements import DisagreementList
from napari_pathreview.widgets._review_nav import NEXT_KEY, PREVIOUS_KEY, QueueNavigation
from napari_pathreview.widgets._review_save import ReviewSaving
from napari_pathreview.widgets._roi_scores import NO_ROI
from napari_pathreview.widgets._shortcuts import bind_panel_keys
from napari_pathreview.widgets._store_thread import wait_in_store_thread
from napari_pathreview.widgets.analyze import compact, is_source_image, layer_modality

logger = logging.getLogger(__name__)

DEFAULT_CLASSES = {
    "histology": ("benign", "malignant"),
    "mammogram": ("normal", "benign", "malignant"),
}
AGREE_KEY, DISAGREE_KEY, SAVE_KEY = "Alt-A", "Alt-D", "Alt-S"

__all__ = ["AGREE_KEY", "DISAGREE_KEY", "NEXT_KEY", "PREVIOUS_KEY", "SAVE_KEY", "ReviewWidget"]


class ReviewWidget(QueueNavigation, DisagreementList, ReviewSaving, QWidget):
    """Agree or disagree with the model on the current image, and move through a queue.

    Args:
        napari_viewer: the viewer this widget is docked in (napari's proxy from the menu).
        db_url: review database (default: ``$PATHREVIEW_DB_URL`` or the home SQLite file).
        busy_timeout_s: how long a save waits for a locked database before giving up.

    Signals:
        image_opened(str): a queue or disagreement image was opened (its layer name), so
            the Analyze tab can follow it.
    """

    image_opened = Signal(str)

    def __init__(
        self, napari_viewer: Any, db_url: str | None = None, busy_timeout_s: float = 2.0
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.db_url = db_url
        self.busy_timeout_s = busy_timeout_s
        self.last_review_id: int | None = None
        self._store: Any = None
        self._shown_image: Any = None
        self._shown_key: tuple[str, str] | None = None
        self._shown_prediction: dict[str, Any] | None = None
        self._shown_reviewer = ""  # whose saved review the form was filled from
        self._state = state.FormState()
        self._outlines = _review_roi.OutlineCache()  # the picked ROI's, kept between checks
        self.saving = False
        self._build_form()
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        self.save_button = QPushButton("Save review (Alt+S)")
        self.save_button.clicked.connect(self.save)
        layout.addWidget(self.save_button)
        self.init_navigation(layout)
        self.init_disagreements(layout)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        show_holes(self.viewer)  # its ROI layers' hole outlines follow its layer list
        self.viewer.layers.selection.events.active.connect(self._follow_active)
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(self.reset_choices)
        keys = {
            AGREE_KEY: lambda panel: panel.set_agreement(state.AGREE),
            DISAGREE_KEY: lambda panel: panel.set_agreement(state.DISAGREE),
            SAVE_KEY: lambda panel: panel.save(),
            NEXT_KEY: lambda panel: panel.next_item(),
            PREVIOUS_KEY: lambda panel: panel.previous_item(),
        }
        bind_panel_keys(self.viewer, self, keys)  # the closed panel lets go of them
        self.reset_choices()

    # ----------------------------------------------------------------- layout
    def _build_form(self) -> None:
        self.image_combo = ComboBox(label="Image", choices=self._image_names)
        self.reviewer = LineEdit(label="Reviewer", value=getpass.getuser())
        self.model_line = LineEdit(label="Model", value="")
        self.model_line.enabled = False
        self.label = ComboBox(label="Label", choices=self._label_choices, nullable=True)
        self.agreement = RadioButtons(
            label="Model (Alt+A/D)",
            choices=(state.AGREE, state.DISAGREE),
            value=state.AGREE,
            orientation="horizontal",
        )
        self.confidence = FloatSlider(label="Confidence", min=0.0, max=1.0, step=0.05, value=0.8)
        self.notes = TextEdit(label="Notes", value="")
        self.notes.native.setMaximumHeight(70)
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
        # Once the name is typed (Enter, or focus leaves), not per keystroke: each is a read.
        self.reviewer.native.editingFinished.connect(self.reviewer_entered)

    # ---------------------------------------------------------------- choices
    def _image_names(self, _widget: Any = None) -> list[str]:
        return [layer.name for layer in self.viewer.layers if is_source_image(layer)]

    def _roi_names(self, _widget: Any = None) -> list[str]:
        image = self.image_layer if hasattr(self, "image_combo") else None
        return [
            NO_ROI,
            *(
                layer.name
                for layer in self.viewer.layers
                if _results.is_roi_layer(layer) and state.belongs_to(layer, image)
            ),
        ]

    @property
    def image_layer(self) -> Any:
        name = self.image_combo.value
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def prediction(self) -> dict[str, Any] | None:
        """The Analyze widget's last prediction on the current image, if any."""
        layer = self.image_layer
        return plugin_meta(layer).get("prediction") if layer is not None else None

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
        """Refresh the pickers; the form is only reset when the image itself changed.

        A renamed image layer (the queue reuses it for the next file) stays picked: falling
        back to the first image for a moment read that image's review and restored its ROI.
        """
        shown = self._shown_image
        with self.image_combo.changed.blocked():
            self.form.reset_choices()
            if shown in self.viewer.layers and shown.name in self.image_combo.choices:
                self.image_combo.value = shown.name
        self._image_changed()

    def _follow_active(self, *_: Any) -> None:
        """Review the image the user selects, unless this one has unsaved entries."""
        active = self.viewer.layers.selection.active
        if self.saving:
            return  # the form stays on the image whose review is being written
        if active is None or not is_source_image(active) or active.name == self.image_combo.value:
            return
        if self.has_unsaved_changes():
            return  # never drop typed entries silently; the queue buttons ask first
        self.form.reset_choices()
        if active.name in self.image_combo.choices:
            self.image_combo.value = active.name

    def _layer_inserted(self, event: Any) -> None:
        """An ROI drawn while an image is under review belongs to that image (and its units)."""
        layer, image = event.value, self.image_layer
        if image is None or not _results.is_roi_layer(layer):
            return
        if not plugin_meta(layer) and state.roi_owner(layer) is None:
            state.tag_owner(layer, image.name)
        _results.match_roi_units(self.viewer, layer, image)

    # ------------------------------------------------------------ form state
    def form_state(self) -> state.FormState:
        """What the form holds now (for the image it was filled for)."""
        agreement = self.agreement.value if self._shown_prediction else state.NO_MODEL
        return state.FormState(
            label=str(self.label.value or ""),
            agreement=agreement,
            confidence=float(self.confidence.value),
            notes=str(self.notes.value or ""),
            roi_layer="" if self.roi_combo.value in (None, NO_ROI) else str(self.roi_combo.value),
            roi_geojson=self._roi_outline(),
            review_id=self._state.review_id,
        )

    def _roi_outline(self) -> dict[str, Any] | None:
        """The picked ROI as a review of the image the form was filled for would store it now
        (None: none, or not storable). That image, not the one just picked: leaving it, the
        ROI is judged against its own image."""
        return self._outlines.outline(self.viewer, self.roi_combo.value, self._shown_image)

    def has_unsaved_changes(self) -> bool:
        """Whether the reviewer typed, picked or redrew something not saved yet."""
        return self._shown_image is not None and not self.form_state().same_entries(self._state)

    def _apply(self, new: state.FormState) -> None:
        if tuple(self.label.choices) != tuple(self.classes()):
            self.label.choices = ()  # magicgui appends new items; rebuild in class order
            self.label.choices = self._label_choices
        with self.label.changed.blocked():
            self.label.value = new.label if new.label in self.label.choices else None
        if new.agreement in (state.AGREE, state.DISAGREE):
            self.agreement.value = new.agreement
        self.agreement.enabled = bool(self.prediction())
        self.confidence.value = new.confidence
        self.notes.value = new.notes
        self._state = new

    def _key(self, image: Any) -> tuple[str, str] | None:
        """Which image the form is about: a reused layer gets a new name and file."""
        return None if image is None else (image.name, str(plugin_meta(image).get("source_path")))

    def _image_changed(self, *_: Any) -> None:
        image = self.image_layer
        if self._key(image) == self._shown_key:
            self.roi_combo.reset_choices()
            return
        if self._leaving_refused():
            return
        if self._shown_image is not None:
            with contextlib.suppress(RuntimeError, TypeError, ValueError):
                self._shown_image.events.metadata.disconnect(self._prediction_changed)
        self._shown_image, self._shown_key = image, self._key(image)
        self._shown_prediction = self.prediction()
        if image is not None:
            image.events.metadata.connect(self._prediction_changed)
        self.roi_combo.reset_choices()
        self.roi_combo.value = NO_ROI
        self._apply(self._state_for(image))
        self._show_model_line()

    def reviewer_entered(self, *_: Any) -> None:
        """The form, count and list follow the reviewer: their saved review, else a fresh form.

        Entries typed before the name are kept (they are this reviewer's, not yet saved).
        """
        reviewer = (self.reviewer.value or "").strip()
        if self.saving:
            return  # the form stays as it is being written; the next entry catches up
        if reviewer != self._shown_reviewer:
            self._shown_reviewer = reviewer
            image = self.image_layer
            if image is not None and not self.has_unsaved_changes():
                self.roi_combo.value = NO_ROI  # another reviewer's saved ROI is not theirs
                self._apply(self._state_for(image))
            else:
                self._state = self._state.edited(review_id=None)
        self.refresh_progress()
        self.refresh_disagreements()

    def _leaving_refused(self) -> bool:
        """Picking another image with unsaved entries asks first; "Stay" puts the pick back."""
        shown = self._shown_image
        if shown is None or shown not in self.viewer.layers or not self.has_unsaved_changes():
            return False
        if self._key(shown) != self._shown_key:
            return False  # the layer itself now holds the next queue image: nothing to stay on
        if self.confirm_leave():
            return False
        with self.image_combo.changed.blocked():
            self.image_combo.value = shown.name
        return True

    def _state_for(self, image: Any, show_roi: bool = True) -> state.FormState:
        """The reviewer's saved review of ``image``, else a fresh form.

        Args:
            image: The image layer under review.
            show_roi: Whether the saved ROI is (re)shown; False keeps the ROI the form was
                filled with (only the prediction changed).
        """
        prediction = self.prediction()
        saved = self._saved_review(image) if image is not None else None
        if saved is None:
            return state.fresh_state(prediction, self.classes())
        restored = state.restored_state(saved, prediction)
        if not show_roi:
            return restored.edited(
                roi_layer=self._state.roi_layer, roi_geojson=self._state.roi_geojson
            )
        name = self._restore_roi(image, restored.roi_geojson)
        # the outline as the layer gives it back, so an untouched layer is no edit
        return restored.edited(roi_layer=name, roi_geojson=self._roi_outline() if name else None)

    def _saved_review(self, image: Any) -> Any:
        source = plugin_meta(image).get("source_path")
        reviewer = self._shown_reviewer = (self.reviewer.value or "").strip()
        if not source or not reviewer or not Path(source).is_file():
            return None
        try:
            return wait_in_store_thread(self._latest_review, Path(source), reviewer)
        except Exception as error:  # noqa: BLE001 - notified; the form starts fresh
            notify_exception(error, "Saved review")
            return None

    def _latest_review(self, source: Path, reviewer: str) -> Any:
        """In the store thread: ``reviewer``'s latest review of the file (hashing it too)."""
        return state.latest_review_of(
            self.store().reviews(reviewer=reviewer), self.sha256_of(source)
        )

    def stored_prediction(
        self, sha256: str, model_ref: str, settings: dict[str, Any]
    ) -> tuple[Any, str] | None:
        """``_recall.stored_prediction`` read in the store thread; None if it cannot be read."""
        try:
            find = _recall.stored_prediction
            return wait_in_store_thread(lambda: find(self.store(), sha256, model_ref, settings))
        except Exception as error:  # noqa: BLE001 - notified; nothing is restored
            notify_exception(error, "Stored prediction")
            return None

    def _restore_roi(self, image: Any, geojson: Any) -> str:
        """Show a saved review's ROI as a Shapes layer and pick it; returns its name ("": none)."""
        if not geojson:
            return ""
        layer = _review_roi.show_saved_roi(self.viewer, image, geojson)
        self.roi_combo.reset_choices()
        self.roi_combo.value = layer.name
        return str(layer.name)

    def _prediction_changed(self, *_: Any) -> None:
        """Analyze stored a prediction (with or without a CAM) on the image under review."""
        if self._key(self.image_layer) != self._shown_key:
            self._image_changed()  # the layer was reused for the next image
            return
        unsaved, typed = self.has_unsaved_changes(), self.form_state()  # judged before the update
        self._shown_prediction = self.prediction()
        if unsaved:
            self._keep_typed(typed)
        else:  # the saved ROI shown stays (re-adding a layer freezes the viewer for a moment)
            self._apply(self._state_for(self.image_layer, show_roi=False))
        self._show_model_line()

    def _keep_typed(self, typed: state.FormState) -> None:
        """A prediction arrived over unsaved entries: keep them, only fill in an empty label.

        Notes typed while the model ran are the reviewer's work; the agreement follows the
        label, as the store requires.
        """
        prediction, baseline = self.prediction(), self._state
        suggested = state.fresh_state(prediction, self.classes())
        label = typed.label if typed.label in self.classes() else suggested.label
        agreement = state.suggest(label, prediction) if label else suggested.agreement
        self._apply(typed.edited(label=label, agreement=agreement))
        if baseline.label:
            self._state = baseline.edited(agreement=state.suggest(baseline.label, prediction))
        else:
            self._state = suggested.edited(review_id=baseline.review_id)

    def _show_model_line(self) -> None:
        """Which model said what; the line starts at the model's name (a long line is cut at
        its end, never at the name), the whole of it in the tooltip."""
        prediction = self.prediction()
        if prediction:
            origin = prediction.get(_recall.RESTORED_KEY)
            text = f"{_recall.record_ref(prediction)} said {prediction['label']}" + (
                f" ({origin})" if origin else ""
            )
        else:
            text = "no prediction (run Analyze); saved without agreement"
        self.model_line.value = text
        self.model_line.native.setCursorPosition(0)
        self.model_line.tooltip = text

    def _suggest_agreement(self, *_: Any) -> None:
        prediction = self.prediction()
        if prediction and self.label.value:
            self.agreement.value = state.suggest(str(self.label.value), prediction)

    def set_agreement(self, value: str) -> None:
        """Agree or disagree (Alt+A / Alt+D); ignored without a prediction."""
        if self.prediction():
            self.agreement.value = value
