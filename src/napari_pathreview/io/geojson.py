"""ROIs as GeoJSON, the format QuPath imports and exports (File ▸ Import/Export objects).

GeoJSON stores vertices as ``[x, y]`` (column, row) with pixel ``i`` spanning [i, i + 1) (its
corner at ``i``, as in QuPath); napari Shapes store ``(row, col)`` with pixel ``i`` centred on
``i`` (see ``pixel_origin``). Every function here takes and returns napari coordinates and
converts at the file boundary only (``_ring_rc`` in, ``_xy`` out). Documents written here say
so under ``PIXEL_ORIGIN_KEY``; a file without it is QuPath's (corner) unless it carries our
``FRAME_KEY``: then our writer made it before the key existed and it holds napari's.
Ellipses and rectangles become polygons (QuPath has no other way to receive them) tagged
with ``pathreview_shape_type`` so that reading the file back restores the napari shape.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.io.pixel_origin import (
    CENTRE,
    CORNER,
    PIXEL_ORIGINS,
    centre_to_corner,
    corner_to_centre,
)

logger = logging.getLogger(__name__)

SHAPE_TYPE_KEY = "pathreview_shape_type"
# A foreign member of the FeatureCollection (QuPath ignores it): where the napari layer sat in
# the world (scale, translate, units), so ROIs drawn over a µm- or mm-scaled image reopen over
# the same tissue. Vertices stay in image pixels, the frame QuPath expects.
FRAME_KEY = "pathreview_frame"
# A foreign member saying where a pixel's coordinate lies: "corner" (QuPath's convention, what
# this module writes) or "centre" (napari's: our files and review ROIs from before 0.5 px was
# accounted for, tagged so when migrated).
PIXEL_ORIGIN_KEY = "pathreview_pixel_origin"
# A napari feature column naming each shape, so the holes napari cannot hold stay with their
# shape (``io.shape_holes``); bookkeeping, never written as a property.
ROI_ID = "pathreview_roi_id"
ELLIPSE_VERTICES = 64  # multiple of 4: the polygon passes through both semi-axis ends
_WRITABLE_TYPES = ("polygon", "rectangle", "ellipse", "path", "line")


@dataclass(frozen=True, eq=False)
class Roi:
    """One region of interest in napari (row, col) order.

    Attributes:
        data: Vertices, N×2 (row, col). For ellipses and rectangles, the four corners of
            the bounding box as napari stores them.
        shape_type: napari shape type: polygon, rectangle, ellipse, path or line.
        properties: Flat, JSON-able properties ("name", "classification", ...).
        holes: Interior rings of a polygon (row, col); napari cannot show them, QuPath can.
        source: Where it was read from ("roi.geojson feature 3"), so that an error found
            later, when it is drawn, names the file and feature; "" for ROIs made in memory.
    """

    data: np.ndarray
    shape_type: str = "polygon"
    properties: Mapping[str, Any] = field(default_factory=dict)
    holes: tuple[np.ndarray, ...] = ()
    source: str = ""


# No image is this large (whole slides reach ~2e5 px); beyond it a coordinate is corrupt.
MAX_COORDINATE = 1e8


def _ring_rc(coords: Sequence[Sequence[float]], where: str, origin: str = CORNER) -> np.ndarray:
    ring = np.asarray(coords, dtype=float)
    if ring.ndim != 2 or ring.shape[0] < 2 or ring.shape[1] < 2:
        raise ImageReadError(f"{where}: a ring needs at least two [x, y] positions")
    if not np.all(np.isfinite(ring)):
        raise ImageReadError(f"{where}: coordinates must be finite numbers (found NaN or inf)")
    if np.abs(ring).max() > MAX_COORDINATE:
        raise ImageReadError(
            f"{where}: coordinate {np.abs(ring).max():g} is beyond any image "
            f"(limit {MAX_COORDINATE:g} pixels)"
        )
    ring = corner_to_centre(ring[:, [1, 0]], origin)  # [x, y] → napari (row, col)
    if ring.shape[0] > 3 and np.allclose(ring[0], ring[-1]):
        ring = ring[:-1]  # GeoJSON closes rings by repeating the first position
    return ring


def _flat_properties(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key == "classification" and isinstance(value, Mapping):
            props["classification"] = value.get("name", "")
        elif isinstance(value, (str, int, float, bool)) or value is None:
            props[key] = value
    return props


def _restore_shape(ring: np.ndarray, shape_type: str) -> np.ndarray:
    """Recover napari's four bounding-box corners of an ellipse written by this module."""
    if shape_type != "ellipse" or ring.shape[0] % 4:
        return ring
    centre = ring.mean(axis=0)
    half1 = ring[0] - centre
    half2 = ring[ring.shape[0] // 4] - centre
    return np.array(
        [
            centre - half1 - half2,
            centre + half1 - half2,
            centre + half1 + half2,
            centre - half1 + half2,
        ]
    )


def _geometry_rois(
    geometry: Mapping[str, Any], props: dict[str, Any], where: str, origin: str
) -> list[Roi]:
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    shape_type = str(props.pop(SHAPE_TYPE_KEY, "polygon"))
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        polygons = list(coords or [])
        shape_type = "polygon"
    elif kind in ("LineString", "MultiLineString"):
        lines = [coords] if kind == "LineString" else list(coords or [])
        line_type = shape_type if shape_type in ("path", "line") else "path"
        return [
            Roi(_ring_rc(line, where, origin), line_type, dict(props), source=where)
            for line in lines
        ]
    elif kind == "GeometryCollection":
        return [
            roi
            for part in geometry.get("geometries", [])
            for roi in _geometry_rois(part, dict(props), where, origin)
        ]
    else:
        logger.warning("%s: skipping %s geometry (napari Shapes hold areas and lines)", where, kind)
        return []
    rois = []
    for polygon in polygons:
        if not polygon:
            raise ImageReadError(f"{where}: empty polygon")
        exterior = _ring_rc(polygon[0], where, origin)
        holes = tuple(_ring_rc(hole, where, origin) for hole in polygon[1:])
        kept = shape_type if shape_type in ("rectangle", "ellipse") else "polygon"
        rois.append(Roi(_restore_shape(exterior, kept), kept, dict(props), holes, where))
    return rois


def _features(document: Any, where: str) -> list[Mapping[str, Any]]:
    if isinstance(document, list):  # QuPath's default export: a bare array of features
        return document
    if not isinstance(document, Mapping):
        raise ImageReadError(f"{where}: not a GeoJSON object")
    kind = document.get("type")
    if kind == "FeatureCollection":
        return list(document.get("features") or [])
    if kind == "Feature":
        return [document]
    if "coordinates" in document or kind == "GeometryCollection":  # a bare geometry, any type:
        # the review store accepts them all; one without area (a Point) is skipped below, as
        # it is inside a Feature, not refused as "not GeoJSON"
        return [{"type": "Feature", "geometry": document, "properties": {}}]
    raise ImageReadError(
        f"{where}: not GeoJSON (type {kind!r}); expected a Feature or FeatureCollection"
    )


def parse_geojson_rois(document: Any, where: str = "GeoJSON") -> list[Roi]:
    """ROIs of an already-parsed GeoJSON document (e.g. a review's ``roi_geojson``).

    Raises:
        ImageReadError: Not GeoJSON, malformed coordinates or an unknown ``PIXEL_ORIGIN_KEY``.
    """
    origin = pixel_origin(document, where)
    rois: list[Roi] = []
    for number, feature in enumerate(_features(document, where)):
        if not isinstance(feature, Mapping) or not isinstance(feature.get("geometry"), Mapping):
            raise ImageReadError(f"{where}: feature {number} has no geometry")
        props = _flat_properties(feature.get("properties"))
        try:
            rois.extend(
                _geometry_rois(feature["geometry"], props, f"{where} feature {number}", origin)
            )
        except (TypeError, ValueError) as error:
            raise ImageReadError(f"{where} feature {number}: bad coordinates ({error})") from error
        except RecursionError:
            raise ImageReadError(f"{where} feature {number}: nested too deeply") from None
    return rois


def pixel_origin(document: Any, where: str = "GeoJSON") -> str:
    """The document's pixel convention: its ``PIXEL_ORIGIN_KEY``; else ``CENTRE`` when it
    carries ``FRAME_KEY`` (our writer's files from before the key), else ``CORNER`` (QuPath).

    Raises:
        ImageReadError: ``PIXEL_ORIGIN_KEY`` names neither convention.
    """
    if not isinstance(document, Mapping):
        return CORNER  # QuPath's bare feature array
    origin = document.get(PIXEL_ORIGIN_KEY)
    if origin is None:
        return CENTRE if FRAME_KEY in document else CORNER
    if origin not in PIXEL_ORIGINS:
        raise ImageReadError(
            f"{where}: {PIXEL_ORIGIN_KEY} is {origin!r}; expected one of {PIXEL_ORIGINS}"
        )
    return str(origin)


def as_corner_document(document: Any, origin: str | None = None) -> Any:
    """A copy of a GeoJSON document in QuPath's convention, tagged with ``PIXEL_ORIGIN_KEY``.

    Args:
        document: A Feature, FeatureCollection, bare geometry or feature array (the array,
            QuPath's own export, cannot be tagged and is read as corner-origin anyway).
        origin: Its convention when known (a migration's old rows); else ``pixel_origin``'s.
    """
    origin = origin or pixel_origin(document)
    shift = float(centre_to_corner(0.0)) if origin == CENTRE else 0.0
    converted = _shifted(document, shift) if shift else copy.deepcopy(document)
    if isinstance(converted, dict):
        converted[PIXEL_ORIGIN_KEY] = CORNER
    return converted


def _shifted(node: Any, shift: float) -> Any:
    """``node`` with every [x, y, ...] position under a ``coordinates`` key moved by ``shift``."""
    if isinstance(node, Mapping):
        return {
            key: _moved(value, shift) if key == "coordinates" else _shifted(value, shift)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_shifted(item, shift) for item in node]
    return node


def _moved(coordinates: Any, shift: float) -> Any:
    if not isinstance(coordinates, list):
        return coordinates
    if coordinates and not isinstance(coordinates[0], list):  # one position [x, y, (z)]
        return [
            v + shift if i < 2 and isinstance(v, (int, float)) else v
            for i, v in enumerate(coordinates)
        ]
    return [_moved(item, shift) for item in coordinates]


def read_geojson_rois(path: str | Path) -> list[Roi]:
    """Read ROIs from a GeoJSON file (QuPath Feature, FeatureCollection or feature array).

    Raises:
        ImageReadError: Not JSON, not GeoJSON, or malformed coordinates.
    """
    return read_geojson(path)[0]


def read_geojson(path: str | Path) -> tuple[list[Roi], dict[str, Any]]:
    """The ROIs of a GeoJSON file and the layer frame saved with them ({} if none).

    Raises:
        ImageReadError: Not JSON, not GeoJSON, malformed coordinates or a malformed frame.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ImageReadError(f"{path}: cannot read GeoJSON ({error})") from error
    except RecursionError:
        raise ImageReadError(f"{path}: GeoJSON nested too deeply to be an annotation") from None
    return parse_geojson_rois(document, str(path)), geojson_frame(document, str(path))


def geojson_frame(document: Any, where: str = "GeoJSON") -> dict[str, Any]:
    """The ``scale``/``translate``/``units`` written under ``FRAME_KEY``, as layer kwargs.

    Raises:
        ImageReadError: The frame is present but not two positive scales, two finite
            offsets and two unit names.
    """
    raw = document.get(FRAME_KEY) if isinstance(document, Mapping) else None
    if raw is None:
        return {}
    try:
        scale = tuple(float(v) for v in raw["scale"])
        translate = tuple(float(v) for v in raw.get("translate", (0.0, 0.0)))
        units = tuple(str(u) for u in raw.get("units", ("pixel", "pixel")))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ImageReadError(f"{where}: malformed {FRAME_KEY} ({error!r})") from error
    numbers = scale + translate
    if (len(scale), len(translate), len(units)) != (2, 2, 2) or not np.all(np.isfinite(numbers)):
        raise ImageReadError(f"{where}: {FRAME_KEY} needs 2 finite scales, offsets and units")
    if min(scale) <= 0:
        raise ImageReadError(f"{where}: {FRAME_KEY} scale must be positive, got {scale}")
    return {"scale": scale, "translate": translate, "units": units}


def frame_of(attributes: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The ``FRAME_KEY`` value: the last two ``scale``, ``translate`` and ``units`` given.

    Args:
        attributes: A napari layer's attributes (the writer's), a ``layer_frame`` or a frame
            read back; keys that are missing are left out.
    """
    frame: dict[str, list[Any]] = {}
    for key, convert in (("scale", float), ("translate", float), ("units", str)):
        values = attributes.get(key)
        if values is not None and len(values) >= 2:
            frame[key] = [convert(v) for v in list(values)[-2:]]
    return frame


def ellipse_ring(corners: np.ndarray) -> np.ndarray:
    """The ring written for an ellipse given by its 4 bounding-box corners (row, col)."""
    centre = corners.mean(axis=0)
    half1 = (corners[1] - corners[0]) / 2.0
    half2 = (corners[2] - corners[1]) / 2.0
    angles = np.arange(ELLIPSE_VERTICES) * (2 * np.pi / ELLIPSE_VERTICES)
    return centre + np.cos(angles)[:, None] * half1 + np.sin(angles)[:, None] * half2


def _xy(ring_rc: np.ndarray, close: bool) -> list[list[float]]:
    corner = centre_to_corner(ring_rc[:, -2:])  # napari (row, col) → GeoJSON [x, y]
    # numpy rounds k/10⁴ to the nearest double, so each value still prints as a short decimal
    points = np.round(np.asarray(corner, dtype=float)[:, ::-1], 4).tolist()
    if close and points and points[0] != points[-1]:
        points.append(points[0])
    return points


def roi_feature(roi: Roi) -> dict[str, Any]:
    """One QuPath-style annotation Feature for a ROI (vertices written [x, y], corner-origin)."""
    data = np.asarray(roi.data, dtype=float)
    if data.ndim != 2 or data.shape[1] < 2 or data.shape[0] < 2:
        raise InvalidInputError(f"a ROI needs N×2 (row, col) vertices, got shape {data.shape}")
    if roi.shape_type not in _WRITABLE_TYPES:
        raise InvalidInputError(f"cannot write shape type {roi.shape_type!r} as GeoJSON")
    props = {k: v for k, v in roi.properties.items() if k != "classification"}
    properties: dict[str, Any] = {"objectType": "annotation", **props}
    if roi.properties.get("classification"):
        properties["classification"] = {"name": str(roi.properties["classification"])}
    if roi.shape_type in ("path", "line"):
        geometry = {"type": "LineString", "coordinates": _xy(data, close=False)}
    else:
        ring = ellipse_ring(data[:, -2:]) if roi.shape_type == "ellipse" else data
        rings = [_xy(ring, close=True)] + [_xy(np.asarray(h, float), close=True) for h in roi.holes]
        geometry = {"type": "Polygon", "coordinates": rings}
    if roi.shape_type != "polygon":
        properties[SHAPE_TYPE_KEY] = roi.shape_type
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def rois_to_geojson(rois: Iterable[Roi], frame: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A FeatureCollection of the ROIs (what review records store as ``roi_geojson``).

    Args:
        rois: The regions, vertices in napari (row, col) order.
        frame: The layer's ``scale``/``translate``/``units``, stored under ``FRAME_KEY``.
    """
    document: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [roi_feature(roi) for roi in rois],
        PIXEL_ORIGIN_KEY: CORNER,
    }
    if frame:
        document[FRAME_KEY] = frame_of(frame)
    return document


def write_geojson_rois(
    path: str | Path, rois: Iterable[Roi], frame: Mapping[str, Any] | None = None
) -> Path:
    """Write ROIs as a GeoJSON FeatureCollection that QuPath imports.

    Args:
        path: Destination (``.geojson``); parent folders are created.
        rois: The regions, vertices in napari (row, col) order.
        frame: The layer's ``scale``/``translate``/``units`` (see ``FRAME_KEY``).

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_feature_per_line(rois_to_geojson(rois, frame)), encoding="utf-8")
    return path


def _feature_per_line(document: dict[str, Any]) -> str:
    """The document as JSON with one compact feature per line: readable in a text editor, and
    written by json's C encoder (``indent=`` falls back to the pure-Python one, which made the
    text, not the tracing, the slow part of saving a slide-sized Labels layer)."""
    head = {key: value for key, value in document.items() if key != "features"}
    lines = [json.dumps(feature) for feature in document["features"]]
    opening = json.dumps(head)[:-1] + (', "features": [' if head else '"features": [')
    return opening + "\n" + ",\n".join(lines) + "\n]}\n"


def rois_from_shapes(
    data: Sequence[np.ndarray],
    shape_types: Sequence[str],
    properties: Mapping[str, Sequence[Any]] | None = None,
    holes: Sequence[Sequence[np.ndarray]] | None = None,
) -> list[Roi]:
    """ROIs from a napari Shapes layer's ``data``, ``shape_type`` and ``features`` columns.

    Only the last two coordinates of each vertex are kept (row, col), so shapes drawn on
    a 3-D stack are written as their 2-D outline. ``holes`` gives each shape's interior
    rings (``io.shape_holes.shape_holes``); the ``ROI_ID`` column is not a property.
    """
    columns = {k: list(v) for k, v in (properties or {}).items() if k != ROI_ID}
    rois = []
    for index, (vertices, kind) in enumerate(zip(data, shape_types, strict=True)):
        props = {k: _json_scalar(v[index]) for k, v in columns.items() if index < len(v)}
        own = holes[index] if holes else ()
        rings = tuple(np.asarray(ring, dtype=float)[:, -2:] for ring in own)
        rois.append(Roi(np.asarray(vertices, dtype=float)[:, -2:], str(kind), props, rings))
    return rois


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
