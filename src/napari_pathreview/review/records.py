"""What the review store hands out (frozen records) and the checked rows it writes.

Building a row validates it completely before any transaction starts, so a bad review is
refused without touching the database; the store only adds the checks that need the
database (does the image exist, does the prediction belong to it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError, ReviewStoreError
from napari_pathreview.review import validation


class ReviewNotFoundError(ReviewStoreError, LookupError):
    """An image sha256 or prediction id the database does not hold."""


@dataclass(frozen=True)
class ImageRecord:
    """A stored image: its identity (sha256 of the bytes) and the facts first recorded."""

    sha256: str
    path: str
    modality: str
    metadata: dict[str, Any]
    patient_id: str | None
    added_at: datetime


@dataclass(frozen=True)
class PredictionRecord:
    """A stored prediction of one model version on one image."""

    id: int
    image_sha256: str
    model_name: str
    model_version: str
    predicted_label: str
    probabilities: dict[str, float]
    settings: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ReviewRecord:
    """One review joined with its image and (when linked) the prediction it judged."""

    id: int
    image_sha256: str
    image_path: str
    modality: str
    patient_id: str | None
    reviewer: str
    label: str
    agrees_with_model: bool | None
    confidence: float | None
    notes: str
    roi_geojson: dict[str, Any] | None
    created_at: datetime
    prediction_id: int | None
    model_name: str | None
    model_version: str | None
    predicted_label: str | None

    @property
    def model(self) -> str | None:
        """``name@version`` of the reviewed prediction, if any."""
        return None if self.model_name is None else f"{self.model_name}@{self.model_version}"


def now_utc() -> datetime:
    """Now, as stored: naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_aware(value: datetime) -> datetime:
    """A stored (naive UTC) time as an aware UTC datetime."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes (the image's identity, whatever its name or folder)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_model_ref(model: str) -> tuple[str, str | None]:
    """``"name@3"`` → ``("name", "3")``; ``"name"`` → ``("name", None)``."""
    name, sep, version = model.rpartition("@")
    return (name, version) if sep and name and version else (model, None)


def image_row(
    path: str | Path, modality: str, metadata: Mapping[str, Any] | None, patient_id: str | None
) -> dict[str, Any]:
    """The ``images`` row for a file (hashes its bytes)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidInputError(f"no image file at {file}")
    return {
        "sha256": file_sha256(file),
        "path": str(file.resolve()),
        "modality": validation.check_modality(modality),
        "metadata": validation.to_json_dict(metadata, "metadata"),
        "patient_id": None
        if patient_id is None
        else validation.require_text(patient_id, "patient_id"),
        "added_at": now_utc(),
    }


def prediction_row(
    image_sha256: str,
    model_name: str,
    model_version: str | int,
    probabilities: Mapping[str, float],
    settings: Mapping[str, Any] | None,
    label: str | None,
) -> dict[str, Any]:
    """The ``predictions`` row; the model's call is ``label`` or else the most probable class."""
    probs = validation.check_probabilities(probabilities)
    predicted = label if label is not None else max(probs, key=probs.__getitem__)
    validation.check_label(predicted, tuple(probs))
    return {
        "image_sha256": validation.require_text(image_sha256, "image_sha256", 64),
        "model_name": validation.require_text(model_name, "model_name"),
        "model_version": validation.require_text(str(model_version), "model_version", 50),
        "predicted_label": predicted,
        "probabilities": probs,
        "settings": validation.to_json_dict(settings, "settings"),
        "created_at": now_utc(),
    }


def _check_flag(value: object, prediction_id: object = None) -> bool | None:
    """True/False for a review of a prediction; None (NULL) only when no prediction is linked."""
    if value is None and prediction_id is None:
        return None
    # numpy.bool_ is not a bool subclass but is what a widget's array code often yields.
    if type(value).__name__ not in ("bool", "bool_"):
        raise InvalidInputError(
            f"agrees_with_model must be True or False for a review of a prediction "
            f"(None only when no prediction is linked), got {value!r}"
        )
    return bool(value)


def _check_id(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InvalidInputError(f"prediction_id must be an integer id, got {value!r}")
    return int(value.__index__())  # type: ignore[attr-defined]


def review_row(
    image_sha256: str,
    reviewer: str,
    label: str,
    agrees_with_model: bool | None,
    confidence: float | None,
    notes: str,
    roi_geojson: Mapping[str, Any] | str | None,
    prediction_id: int | None,
    created_at: datetime | date | str | None,
) -> dict[str, Any]:
    """The ``reviews`` row; the store checks the label against the model's classes later."""
    if not isinstance(notes, str):
        raise InvalidInputError(f"notes must be a string, got {type(notes).__name__}")
    if "\x00" in notes:
        raise InvalidInputError("notes contain a NUL character (PostgreSQL refuses it)")
    now = now_utc()
    when = validation.to_utc_naive(created_at)
    return {
        "image_sha256": validation.require_text(image_sha256, "image_sha256", 64),
        "prediction_id": _check_id(prediction_id),
        "reviewer": validation.require_text(reviewer, "reviewer"),
        "label": validation.check_label(label, None),
        "agrees_with_model": _check_flag(agrees_with_model, prediction_id),
        "confidence": validation.check_confidence(confidence),
        "notes": notes,
        "roi_geojson": validation.normalise_geojson(roi_geojson),
        "created_at": now if when is None else validation.check_not_future(when, now),
    }
