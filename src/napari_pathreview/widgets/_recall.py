"""Predictions made earlier on an image, offered again when the reviewer comes back to it.

No Qt here. The work queue shows every image in one reused layer, so a layer's metadata holds
only the prediction of the image shown now: coming back to an image used to find none, and
the Review form and a saved session recorded ``null``. A prediction is kept (or found in the
review database) under the image file's sha256 and the model and settings that made it, and
is offered back only for that same image, model version and the settings that make the
prediction (``analysis.prediction_settings``) — never another image's, nor one of a model or
such settings other than those chosen now. It comes back labelled
with where it came from, so nobody mistakes it for a fresh run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.analysis import prediction_settings
from napari_pathreview.registry.card import decision_threshold
from napari_pathreview.widgets._layer_meta import plugin_meta

SESSION = "from earlier this session"
STORED = "stored in the review database"
SAVED = "from the saved session"  # reopened from a session file (another day, perhaps)
#: The key of a restored prediction (and of the queue's image hash) in the plugin metadata.
RESTORED_KEY, SHA_KEY = "restored", "sha256"


def image_sha256(layer: Any) -> str | None:
    """The sha256 of the file a queue layer shows (the queue reader notes it), else None."""
    sha = plugin_meta(layer).get(SHA_KEY) if layer is not None else None
    return str(sha) if sha else None


def image_identity(layer: Any) -> tuple[str | None, str | None]:
    """Which image ``layer`` shows now (its file and hash): a reused layer changes both."""
    meta = plugin_meta(layer)
    return meta.get("source_path"), meta.get(SHA_KEY)


def record_ref(record: Mapping[str, Any]) -> str:
    """``name@version`` of the model that made prediction ``record``."""
    return f"{record.get('model_name')}@{record.get('model_version')}"


def made_by(record: Mapping[str, Any], model_ref: str, settings: Mapping[str, Any]) -> bool:
    """Whether prediction ``record`` was made by ``model_ref`` (name@version) with the settings
    that make a prediction (``prediction_settings``: a CAM method or device of its own does not
    change it)."""
    return record_ref(record) == model_ref and same_prediction_settings(
        record.get("settings") or {}, settings
    )


def same_prediction_settings(recorded: Mapping[str, Any], chosen: Mapping[str, Any]) -> bool:
    """Whether ``recorded`` and ``chosen`` settings give the same probabilities."""
    return prediction_settings(recorded) == prediction_settings(chosen)


def restored(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """A copy of ``record`` marked as restored ``origin`` (SESSION or STORED), not fresh."""
    return {**record, RESTORED_KEY: origin}


def for_session(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``record`` as a session file keeps it: without its origin, which reads wrongly the day
    the session is reopened (that origin is ``SAVED``: :func:`from_session`)."""
    if not record:
        return None
    return {k: v for k, v in record.items() if k != RESTORED_KEY}


def from_session(record: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction read back from a session file, labelled so (it is not a fresh run)."""
    return restored(record, SAVED)


def from_stored(row: Any, db_key: str, card: Any) -> dict[str, Any]:
    """The layer-metadata record of a stored ``PredictionRecord`` made by ``card``'s model.

    ``store_id`` names the row, so a review saved against it links to it (no second copy).
    """
    classes = list(card.classes)
    return {
        "model_name": row.model_name,
        "model_version": str(row.model_version),
        "classes": classes,
        "probabilities": {c: float(row.probabilities[c]) for c in classes},
        "label": str(row.predicted_label),
        "threshold": decision_threshold(card, classes),
        "settings": dict(row.settings),
        "store_id": {db_key: int(row.id)},
        RESTORED_KEY: STORED,
    }


class PredictionMemory:
    """This session's predictions by image sha256, model and settings (the latest of each)."""

    def __init__(self) -> None:
        self._records: dict[str, list[dict[str, Any]]] = {}

    def remember(self, sha256: str | None, record: dict[str, Any]) -> None:
        """Keep ``record`` for image ``sha256`` (a layer not opened by the queue has none)."""
        if not sha256:
            return
        kept = self._records.setdefault(sha256, [])
        ref, settings = record_ref(record), record.get("settings") or {}
        kept[:] = [r for r in kept if not made_by(r, ref, settings)]
        kept.append(record)

    def recall(
        self, sha256: str, model_ref: str, settings: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The prediction this model made on this image with these settings, or None."""
        found = [r for r in self._records.get(sha256, []) if made_by(r, model_ref, settings)]
        return found[-1] if found else None


def put_prediction(layer: Any, record: dict[str, Any]) -> None:
    """Set ``layer``'s prediction; a new metadata dict fires its event (Review listens)."""
    meta = plugin_meta(layer)
    meta["prediction"] = record
    layer.metadata = {**layer.metadata, "pathreview": meta}


def find_earlier(
    layer: Any,
    request: Any,
    memory: PredictionMemory,
    stored: Callable[[str, str, Mapping[str, Any]], tuple[Any, str] | None] | None,
    card: Any,
) -> dict[str, Any] | None:
    """The earlier prediction to show on a queue image that has none: this session's, else the
    review database's (``stored``), labelled; None unless image, model and settings (those of
    the ``AnalysisRequest`` the form holds now) all match."""
    sha = image_sha256(layer)
    if sha is None or plugin_meta(layer).get("prediction"):
        return None
    model_ref, settings = request.model_ref, request.settings()
    record = memory.recall(sha, model_ref, settings)
    if record is not None:
        return restored(record, SESSION)
    found = stored(sha, model_ref, settings) if stored is not None else None
    return None if found is None else from_stored(*found, card)


def stored_prediction(
    store: Any, sha256: str, model_ref: str, settings: Mapping[str, Any]
) -> tuple[Any, str] | None:
    """The latest prediction ``store`` holds of image ``sha256`` by ``model_ref`` with
    ``settings``, and the store's key (for ``store_id``); None when there is none."""
    rows = store.predictions(sha256, model=model_ref)
    same = [row for row in rows if same_prediction_settings(row.settings, settings)]
    return (same[-1], str(store.url)) if same else None


class RecallsPredictions:
    """The Analyze widget's side (a mixin): show an earlier prediction where one belongs.

    ``stored_prediction`` is the Review widget's look-up in the database (the workspace joins
    them); without it only this session's predictions come back.
    """

    memory: PredictionMemory
    stored_prediction: Callable[..., tuple[Any, str] | None] | None = None

    def recall_prediction(self) -> dict[str, Any] | None:
        """Show a queue image's earlier prediction by the chosen model and settings (labelled
        restored), when it has none: coming back to an image must not lose its prediction."""
        layer, card = self.image_layer, self.selected_card()
        if layer is None or card is None or self.result_layer is not None:
            return None
        try:
            request = self.request()
        except InvalidInputError:  # no model chosen: nothing to match
            return None
        record = find_earlier(layer, request, self.memory, self.stored_prediction, card)
        if record is None:
            return None
        put_prediction(layer, record)
        self._watch_result_layer(layer)
        self.result_layer = layer
        self.view.fill_restored(record, card)
        self.status.setText(f"prediction restored {record[RESTORED_KEY]}")
        return record
