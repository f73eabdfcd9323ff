"""Checks on what callers hand the review store, before anything touches the database.

A review is a pathologist's judgement; a malformed one (an unknown label, an ROI that is
not GeoJSON, a confidence of 7) would silently poison the retraining manifest, so each is
refused with :class:`~napari_pathreview.errors.InvalidInputError` saying what to fix.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from pathlib import PurePath
from typing import Any

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.modality import MODALITIES

GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
MAX_NAME_LENGTH = 200


def require_text(value: object, what: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A non-empty, stripped string of bounded length (names, labels, reviewers)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string, got {value!r}")
    stripped = value.strip()
    if "\x00" in stripped:
        # PostgreSQL refuses NUL in text; SQLite would store it. Refuse it on both.
        raise InvalidInputError(f"{what} contains a NUL character: {stripped!r}")
    if len(stripped) > max_length:
        raise InvalidInputError(f"{what} is longer than {max_length} characters")
    return stripped


def check_modality(modality: object) -> str:
    """One of :data:`MODALITIES`."""
    if modality not in MODALITIES:
        raise InvalidInputError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return str(modality)


def check_label(label: object, allowed: Sequence[str] | None) -> str:
    """The label, which must be one of ``allowed`` when the model's classes are known."""
    text = require_text(label, "label", max_length=100)
    if allowed is not None and text not in allowed:
        raise InvalidInputError(
            f"label {text!r} is not one of the model's classes {tuple(allowed)}; "
            "pick one of those or record the review without a prediction"
        )
    return text


def check_confidence(confidence: object) -> float | None:
    """``None`` or a finite number in [0, 1]."""
    if confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise InvalidInputError(f"confidence must be a number in [0, 1], got {confidence!r}")
    value = float(confidence)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"confidence must be in [0, 1], got {value}")
    return value


def check_probabilities(probabilities: object) -> dict[str, float]:
    """A non-empty mapping class name → probability in [0, 1]."""
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise InvalidInputError(
            "probabilities must be a non-empty mapping of class → probability, "
            f"got {probabilities!r}"
        )
    checked: dict[str, float] = {}
    for name, value in probabilities.items():
        key = require_text(name, "class name", max_length=100)
        try:
            number = float(value)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"probability of {key!r} is not a number: {value!r}") from error
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise InvalidInputError(f"probability of {key!r} must be in [0, 1], got {number}")
        checked[key] = number
    return checked


def _json_default(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):  # small numpy arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json_dict(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """A JSON round-trip copy of ``value`` (paths and numpy scalars converted)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{what} cannot be stored as JSON: {error}") from error


def _check_geometry(geometry: object, where: str) -> None:
    if not isinstance(geometry, Mapping):
        raise InvalidInputError(f"{where} must be a GeoJSON geometry object")
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list):
            raise InvalidInputError(f"{where}: GeometryCollection needs a 'geometries' list")
        for i, member in enumerate(members):
            _check_geometry(member, f"{where}.geometries[{i}]")
        return
    if kind not in GEOMETRY_TYPES:
        raise InvalidInputError(f"{where}: {kind!r} is not a GeoJSON geometry type")
    if not isinstance(geometry.get("coordinates"), list):
        raise InvalidInputError(f"{where}: a {kind} needs a 'coordinates' array")


def _check_feature(feature: object, where: str) -> None:
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise InvalidInputError(f"{where} must be a GeoJSON Feature")
    if "geometry" not in feature:
        raise InvalidInputError(f"{where}: a Feature needs a 'geometry' member (may be null)")
    if feature["geometry"] is not None:
        _check_geometry(feature["geometry"], f"{where}.geometry")


def normalise_geojson(roi: Mapping[str, Any] | str | None) -> str | None:
    """The ROI as compact GeoJSON text, after checking it is a Feature, collection or geometry.

    Accepts a parsed object or JSON text (e.g. a QuPath export read from disk). It is stored
    in QuPath's pixel convention (pixel ``i`` spans [i, i + 1)) and tagged so
    (``io.geojson.PIXEL_ORIGIN_KEY``): a document in napari's is converted first.
    """
    from napari_pathreview.io.geojson import as_corner_document

    if roi is None:
        return None
    if isinstance(roi, str):
        try:
            parsed = json.loads(roi)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"roi_geojson is not valid JSON: {error}") from error
        except RecursionError:
            raise InvalidInputError("roi_geojson is nested too deeply to be an ROI") from None
    else:
        parsed = to_json_dict(roi, "roi_geojson")
    if not isinstance(parsed, dict):
        raise InvalidInputError("roi_geojson must be a GeoJSON object")
    kind = parsed.get("type")
    if kind == "FeatureCollection":
        features = parsed.get("features")
        if not isinstance(features, list):
            raise InvalidInputError("roi_geojson: a FeatureCollection needs a 'features' list")
        for i, feature in enumerate(features):
            _check_feature(feature, f"roi_geojson.features[{i}]")
    elif kind == "Feature":
        _check_feature(parsed, "roi_geojson")
    else:
        _check_geometry(parsed, "roi_geojson")
    try:
        parsed = as_corner_document(parsed)
    except ImageReadError as error:
        raise InvalidInputError(str(error)) from None
    return json.dumps(parsed, separators=(",", ":"), allow_nan=False)


# Clocks of two machines sharing a database disagree a little; more than this is an error.
CLOCK_SKEW = timedelta(minutes=5)


def check_not_future(moment: datetime, now: datetime, what: str = "created_at") -> datetime:
    """``moment`` (naive UTC), refused when later than ``now`` plus :data:`CLOCK_SKEW`.

    A review dated in the future would sort as every reviewer's "latest" forever.
    """
    if moment > now + CLOCK_SKEW:
        raise InvalidInputError(
            f"{what} {moment.isoformat()} UTC is in the future (now {now.isoformat()} UTC); "
            "check the clock or the date given"
        )
    return moment


def to_utc_naive(
    value: datetime | date | str | None, *, end_of_day: bool = False
) -> datetime | None:
    """A bound for a date filter as naive UTC (how timestamps are stored).

    Naive datetimes are taken as UTC. A bare date (or ``YYYY-MM-DD`` text) means the start of
    that day, or with ``end_of_day`` the start of the next day, so ``until=2026-11-23``
    includes all of the 23rd.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError as error:
            raise InvalidInputError(
                f"not an ISO date or date-time: {text!r} (use e.g. 2026-11-23 or 2026-11-23T14:00)"
            ) from error
    if not isinstance(value, datetime):
        if not isinstance(value, date):
            raise InvalidInputError(f"expected a date or datetime, got {value!r}")
        day = value + timedelta(days=1) if end_of_day else value
        return datetime.combine(day, time())
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
