"""Per-image review state, with no Qt in it: what the form shows for an image and its checks.

A review belongs to one image. When the image changes the form is reset, or filled from the
reviewer's last saved review of that image; ROI layers are offered only when they belong to
the image under review; and the agreement stored is derived from the data, never a default:
no prediction → ``None`` (NULL), and "disagree" with the model's own label is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets._layer_meta import plugin_meta

AGREE, DISAGREE, NO_MODEL = "agree", "disagree", "no prediction"
DEFAULT_CONFIDENCE = 0.8


class AgreementError(InvalidInputError):
    """The agree/disagree choice contradicts the label and the model's call."""


@dataclass(frozen=True)
class FormState:
    """What the review form holds for one image.

    Attributes:
        label: the reviewer's label ("" when none chosen).
        agreement: ``agree``, ``disagree`` or ``no prediction``.
        confidence: the reviewer's confidence in [0, 1].
        notes: free text.
        roi_geojson: the picked ROI's outline as the review stores it (GeoJSON), or None;
            a saved review's is restored as a Shapes layer.
        roi_layer: the ROI layer picked in the form ("" for none): picking another is an edit.
        review_id: id of the saved review this state came from (None: a fresh form).
    """

    label: str = ""
    agreement: str = NO_MODEL
    confidence: float = DEFAULT_CONFIDENCE
    notes: str = ""
    roi_geojson: Mapping[str, Any] | None = None
    roi_layer: str = ""
    review_id: int | None = None

    def edited(self, **changes: Any) -> FormState:
        return replace(self, **changes)

    def same_entries(self, other: FormState) -> bool:
        """Whether what the reviewer typed, picked or drew is the same (ids aside): a moved
        vertex of the ROI, or a shape added or deleted, is an edit."""
        return self._entries() == other._entries()

    def _entries(self) -> tuple[str, str, float, str, str, Mapping[str, Any] | None]:
        return (
            self.label,
            self.agreement,
            round(self.confidence, 3),
            self.notes.strip(),
            self.roi_layer,
            self.roi_geojson,
        )


def fresh_state(prediction: Mapping[str, Any] | None, classes: Sequence[str]) -> FormState:
    """The form for an image not reviewed yet: the model's label suggested, agreeing."""
    if prediction and prediction.get("label") in classes:
        return FormState(label=str(prediction["label"]), agreement=AGREE)
    return FormState(label="", agreement=AGREE if prediction else NO_MODEL)


def restored_state(record: Any, prediction: Mapping[str, Any] | None) -> FormState:
    """The form filled from a saved review (the reviewer comes back to this image)."""
    if record.agrees_with_model is None or not prediction:
        agreement = NO_MODEL if not prediction else suggest(record.label, prediction)
    else:
        agreement = AGREE if record.agrees_with_model else DISAGREE
    return FormState(
        label=str(record.label),
        agreement=agreement,
        confidence=DEFAULT_CONFIDENCE if record.confidence is None else float(record.confidence),
        notes=str(record.notes or ""),
        roi_geojson=record.roi_geojson,
        review_id=int(record.id),
    )


def latest_review_of(records: Sequence[Any], sha256: str) -> Any:
    """The newest of ``records`` for the image ``sha256`` (records come oldest first)."""
    mine = [r for r in records if getattr(r, "image_sha256", None) == sha256]
    return mine[-1] if mine else None


def suggest(label: str, prediction: Mapping[str, Any] | None) -> str:
    """The agreement the label implies: same as the model → agree, else disagree."""
    if not prediction:
        return NO_MODEL
    return AGREE if label == prediction.get("label") else DISAGREE


def agrees_with_model(
    label: str, agreement: str, prediction: Mapping[str, Any] | None
) -> bool | None:
    """What the store records: None without a prediction; refuses contradictions.

    Raises:
        AgreementError: "disagree" with the model's own label, or "agree" with another.
    """
    if not prediction:
        return None
    said = prediction.get("label")
    if agreement == DISAGREE and label == said:
        raise AgreementError(
            f"you chose 'disagree' but your label {label!r} is the model's own call; "
            "pick the label you think is right, or choose 'agree'."
        )
    if agreement == AGREE and label != said:
        raise AgreementError(
            f"you chose 'agree' but the model said {said!r} and your label is {label!r}; "
            "choose 'disagree' (that is what makes the case useful for retraining)."
        )
    if agreement not in (AGREE, DISAGREE):
        raise AgreementError("choose agree or disagree with the model's call.")
    return agreement == AGREE


# ------------------------------------------------------------------------ ROI ownership


def roi_owner(layer: Any) -> str | None:
    """The image an ROI layer belongs to: tagged, named after it, or None when unknown."""
    meta = plugin_meta(layer)
    owner = meta.get("image")
    return str(owner) if owner else None


def belongs_to(layer: Any, image: Any) -> bool:
    """Whether ROI ``layer`` belongs to the image layer ``image``.

    Tagged layers (drawn while the image was under review, restored, or opened with it)
    match by tag; others by name ("mdb028 ROI", "ROI · mdb028") or by a shared source file.
    """
    if image is None:
        return False
    owner = roi_owner(layer)
    if owner is not None:
        return owner == image.name
    if image.name and image.name in str(layer.name):
        return True
    source, image_source = (
        plugin_meta(layer).get("source_path"),
        plugin_meta(image).get("source_path"),
    )
    if source and image_source:
        return Path(str(source)).stem.split(".")[0] == Path(str(image_source)).stem
    return False


def tag_owner(layer: Any, image_name: str) -> None:
    """Record that ``layer`` belongs to ``image_name`` (fires the layer's metadata event)."""
    meta = plugin_meta(layer)
    meta["image"] = image_name
    layer.metadata = {**(layer.metadata or {}), "pathreview": meta}


def own_roi_name(viewer: Any, names: Any, image: Any) -> str | None:
    """The first of the layer ``names`` that is an ROI of ``image`` (see belongs_to), or None."""
    for name in names:
        if name in viewer.layers and belongs_to(viewer.layers[name], image):
            return str(name)
    return None
