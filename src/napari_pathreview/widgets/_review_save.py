"""The Review form saved: read and checked in the viewer, written in the store thread.

A mixin of :class:`~napari_pathreview.widgets.review.ReviewWidget` (it uses the widget's
form, its state, queue and lists). The form is read and checked (:class:`InvalidInputError`
names what to fill in) before anything is written; the image, the prediction it judges
(once per database) and the review are then written in the store thread
(:mod:`~napari_pathreview.widgets._store_thread`), so a locked or silent database makes
Save wait, never the viewer. A save that fails leaves the form untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets import _review_roi
from napari_pathreview.widgets import _review_state as state
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._notify import notify_exception, show_info
from napari_pathreview.widgets._store_thread import wait_in_store_thread
from napari_pathreview.widgets.analyze import layer_modality


class ReviewSaving:
    """Save for the Review widget (a mixin): the store, the form read, the write."""

    _store: Any

    def store(self) -> Any:
        """The review store, opened on first use (a failure to open is retried next time).

        Opening connects to the database: call it in the store thread, as every caller here does.
        """
        if self._store is None:
            from napari_pathreview.review import ReviewStore

            self._store = ReviewStore(self.db_url, busy_timeout_s=self.busy_timeout_s, retries=1)
        return self._store

    def _gather(self) -> dict[str, Any]:
        layer = self.image_layer
        if layer is None:
            raise InvalidInputError("choose the image you are reviewing (open one first).")
        meta = plugin_meta(layer)
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
        label = str(self.label.value)
        prediction = self.prediction()
        return {
            "layer_name": layer.name,
            "source": Path(source),
            "modality": layer_modality(layer),
            "reviewer": reviewer,
            "patient_id": meta.get("patient_id"),
            "label": label,
            "agrees": state.agrees_with_model(label, self.agreement.value, prediction),
            "confidence": float(self.confidence.value),
            "notes": str(self.notes.value or ""),
            "roi": _review_roi.roi_geojson(self.viewer, self.roi_combo.value, layer),
            "classes": self.classes(),
            "prediction": prediction,  # the layer's own dict: its store ids are noted on it
        }

    def save(self, *_: Any) -> int | None:
        """Write the review (and the prediction it judges); returns its id, None on failure.

        The form is read here, written in the store thread; while that waits (a locked or
        silent database) the viewer stays live, Save is disabled and a second press is refused.
        """
        if self.saving:
            show_info("Still saving the last review; wait for it before saving again.")
            return None
        shown_key, entries = self._shown_key, self.form_state()
        self.saving = True
        self.save_button.setEnabled(False)
        try:
            form = self._gather()
            review_id, sha, db_key, prediction_id = wait_in_store_thread(
                lambda: write_review(self.store(), form)
            )
        except Exception as error:  # noqa: BLE001 - notified; the form keeps its contents
            notify_exception(error, "Review not saved (your entries are kept)")
            return None
        finally:
            self.saving = False
            self.save_button.setEnabled(True)
        if prediction_id is not None:  # the prediction's row, reused by the next save
            form["prediction"].setdefault("store_id", {})[db_key] = prediction_id
        if self.queue is not None:
            self.queue.mark_reviewed(sha)
        self.last_review_id = review_id
        if self._shown_key == shown_key:  # edits made while it was written stay unsaved
            self._state = entries.edited(review_id=review_id)
        show_info(f"Review saved ({form['reviewer']}: {form['label']}).")
        self.refresh_progress()
        self.refresh_disagreements()
        return review_id


def write_review(store: Any, form: dict[str, Any]) -> tuple[int, str, str, int | None]:
    """In the store thread: the image, the prediction (once per database) and the review.

    Returns the review id, the image's hash, the database key and the prediction id.
    """
    db_key = str(store.url)
    patient = form["patient_id"]
    sha = store.add_image(
        form["source"],
        form["modality"],
        metadata={"layer": form["layer_name"]},
        patient_id=str(patient) if patient else None,
    )
    prediction, prediction_id = form["prediction"], None
    if prediction:
        prediction_id = prediction.get("store_id", {}).get(db_key)
        if prediction_id is None:
            prediction_id = store.add_prediction(
                sha,
                prediction["model_name"],
                prediction["model_version"],
                prediction["probabilities"],
                prediction["settings"],
                label=prediction["label"],
            )
    review_id = store.add_review(
        sha,
        form["reviewer"],
        form["label"],
        form["agrees"],
        confidence=form["confidence"],
        notes=form["notes"],
        roi_geojson=form["roi"],
        prediction_id=prediction_id,
        allowed_labels=form["classes"],
    )
    return review_id, sha, db_key, prediction_id
