"""Polygon holes carried by a napari Shapes layer, which cannot hold them itself.

QuPath's regions with a cut-out reach napari as Shapes, which keep the outline only. So each
shape gets an id in the ``ROI_ID`` feature column and its holes (rings in the layer's data
coordinates) are kept in ``metadata["pathreview"]["holes"]`` under that id. napari deletes and
reorders feature rows with their shapes, so the holes stay with their region; a shape drawn
later gets ``NO_ID`` (napari's default would copy the last row's id, and with it its holes).
Beside the holes each region's outline is kept (``ANCHORS_KEY``): a region whose vertices all
moved by one affine map (dragged, or resized or rotated by napari's selection box) was moved as a
whole, and its holes take the same map (:func:`region_transform`). A hole no longer
inside its region's outline (the region was reshaped away from it) is dropped where holes are
used, so no polygon is written with a hole outside it; :func:`settle_holes` says which shapes
lost one, so the napari side can tell the user. napari draws no hole, so ``widgets._hole_outlines``
shows them as outlines (:func:`hole_outlines`) in a layer of their own beside the ROI layer
(``HOLES_KIND``); the masks (``explain.masks.cut_holes``) and the GeoJSON written honour them.
Display, saving and scoring all place holes through :func:`settle_holes`, so they agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.measure import points_in_poly

from napari_pathreview.io.geojson import ROI_ID, Roi, ellipse_ring

logger = logging.getLogger(__name__)

NO_ID = -1
HOLES_KEY = "holes"
ANCHORS_KEY = "hole_anchors"
"""Each holed region's outline (row, col) when its holes were last placed; older metadata
without it keeps its holes where they were drawn."""
HOLES_KIND = "roi_holes"
"""``metadata["pathreview"]["kind"]`` of the layer showing an ROI layer's holes: a display,
never an ROI itself (not offered in the pickers, not saved as regions)."""


def carry_holes(kwargs: Mapping[str, Any], rois: Sequence[Roi]) -> dict[str, Any]:
    """``kwargs`` of the Shapes layer of ``rois``, plus the id column and holes that carry
    their holes (unchanged when none has a hole)."""
    kwargs = dict(kwargs)
    if not any(roi.holes for roi in rois):
        return kwargs
    features = {str(k): list(v) for k, v in (kwargs.get("features") or {}).items()}
    features[ROI_ID] = list(range(len(rois)))
    defaults = {key: values[-1] for key, values in features.items()}  # napari's own default
    defaults[ROI_ID] = NO_ID
    metadata = dict(kwargs.get("metadata") or {})
    facts = dict(metadata.get("pathreview") or {})
    facts[HOLES_KEY] = {
        str(index): [np.asarray(ring, float)[:, -2:].tolist() for ring in roi.holes]
        for index, roi in enumerate(rois)
        if roi.holes
    }
    facts[ANCHORS_KEY] = {
        str(index): np.asarray(roi.data, float)[:, -2:].tolist()
        for index, roi in enumerate(rois)
        if roi.holes
    }
    metadata["pathreview"] = facts
    return {**kwargs, "features": features, "feature_defaults": defaults, "metadata": metadata}


@dataclass(frozen=True)
class SettledHoles:
    """Where each shape's holes are now, and what changed.

    Attributes:
        holes: Per shape, its holes in the layer's data coordinates (row, col).
        facts: The layer's ``metadata["pathreview"]`` with the holes and anchors as now
            placed (those dropped removed); None when the layer carries no holes.
        dropped: Indices of the shapes that lost a hole (reshaped so it lies outside).
    """

    holes: list[tuple[np.ndarray, ...]]
    facts: dict[str, Any] | None
    dropped: list[int]


def settle_holes(
    data: Sequence[np.ndarray],
    shape_types: Sequence[str],
    features: Any,
    metadata: Mapping[str, Any] | None,
) -> SettledHoles:
    """Place each shape's holes on its outline as it is now.

    A region moved as a whole (every vertex by one affine map since its anchor) takes its
    holes along; a hole that lies outside its region after that is dropped.

    Args:
        data: The layer's ``data``.
        shape_types: Its ``shape_type`` list.
        features: Its ``features`` (a DataFrame, or a mapping of columns).
        metadata: Its ``metadata``.
    """
    facts = dict((metadata or {}).get("pathreview") or {})
    stored = facts.get(HOLES_KEY) or {}
    if not stored or features is None or ROI_ID not in features:
        return SettledHoles([()] * len(data), None, [])
    anchors = facts.get(ANCHORS_KEY) or {}
    ids = list(features[ROI_ID])
    holes: list[tuple[np.ndarray, ...]] = []
    kept_holes: dict[str, list[list[list[float]]]] = {}
    kept_anchors: dict[str, list[list[float]]] = {}
    dropped = []
    for index in range(len(data)):
        key = _key(ids, index)
        rings = stored.get(key, []) if key else []
        outline = np.asarray(data[index], float)[:, -2:]
        transform = region_transform(anchors.get(key), outline)
        moved = [_apply(transform, np.asarray(r, float)) for r in rings]
        own = _inside(outline, shape_types[index], moved)
        holes.append(own)
        if len(own) < len(rings):
            dropped.append(index)
        if own:
            kept_holes[key] = [ring.tolist() for ring in own]
            kept_anchors[key] = outline.tolist()
    facts[HOLES_KEY], facts[ANCHORS_KEY] = kept_holes, kept_anchors
    return SettledHoles(holes, facts, dropped)


def shape_holes(
    data: Sequence[np.ndarray],
    shape_types: Sequence[str],
    features: Any,
    metadata: Mapping[str, Any] | None,
) -> list[tuple[np.ndarray, ...]]:
    """The holes of each shape of a layer, in its data coordinates (row, col): those of
    :func:`settle_holes`, moved with a dragged region, none outside its region.

    Args:
        data: The layer's ``data``.
        shape_types: Its ``shape_type`` list.
        features: Its ``features`` (a DataFrame, or a mapping of columns).
        metadata: Its ``metadata``.
    """
    return settle_holes(data, shape_types, features, metadata).holes


def region_transform(anchor: Any, outline: np.ndarray) -> np.ndarray:
    """The 3×3 affine map (row, col) that took the region from ``anchor`` to ``outline``: the
    identity when it was reshaped (a vertex added, or moved on its own), or has no anchor.

    napari's selection box moves, resizes and rotates a region: each is one affine map of every
    vertex, and the holes inside take it too. A triangle fits any affine map exactly, so for
    fewer than four vertices only a move (one displacement) counts as a whole-region edit.
    """
    identity = np.eye(3)
    if anchor is None:
        return identity
    before = np.asarray(anchor, float)
    if before.shape != outline.shape or before.ndim != 2 or before.shape[1] != 2:
        return identity
    shift = outline - before
    if np.allclose(shift, shift[0], atol=1e-6):
        moved = identity.copy()
        moved[:2, 2] = shift[0]
        return moved
    if len(before) < 4:
        return identity
    source = np.hstack([before, np.ones((len(before), 1))])
    fitted, *_ = np.linalg.lstsq(source, outline, rcond=None)  # 3×2: outline ≈ source @ fitted
    tolerance = 1e-6 * max(1.0, float(np.abs(outline).max()))
    if not np.allclose(source @ fitted, outline, atol=tolerance):
        return identity
    mapped = identity.copy()
    mapped[:2, :] = fitted.T
    return mapped


def _apply(transform: np.ndarray, ring: np.ndarray) -> np.ndarray:
    return ring @ transform[:2, :2].T + transform[:2, 2]


def _key(ids: list[Any], index: int) -> str:
    if index >= len(ids) or ids[index] is None or ids[index] == NO_ID:
        return ""
    try:
        return str(int(ids[index]))
    except (TypeError, ValueError):
        return ""


def _inside(outline: np.ndarray, shape_type: str, rings: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """The rings lying inside the shape's outline; the others are dropped and logged."""
    if not rings:
        return ()
    if shape_type == "ellipse" and outline.shape[0] == 4:
        outline = ellipse_ring(outline)
    kept = []
    for ring in rings:
        points = np.asarray(ring, float)
        if points.ndim == 2 and points.shape[0] >= 3 and points_in_poly(points, outline).all():
            kept.append(points)
        else:
            logger.warning("a hole no longer inside its reshaped region is dropped")
    return tuple(kept)


def dropped_hole_message(layer_name: str, index: int, features: Any) -> str:
    """What the user is told when shape ``index`` of ``layer_name`` lost a hole: the ROI by
    layer, number (from 1, as counted in the layer) and its name or class when it has one."""
    label = ""
    for column in ("name", "classification"):
        values = list(features[column]) if features is not None and column in features else []
        if index < len(values) and str(values[index]).strip():
            label = f" ({values[index]})"
            break
    return (
        f"ROI layer {layer_name!r}, shape {index + 1}{label}: a hole no longer lies inside the "
        "reshaped region and was dropped; reopen the GeoJSON to get it back"
    )


def hole_outlines(
    data: Sequence[np.ndarray], holes: Sequence[Sequence[np.ndarray]]
) -> tuple[list[np.ndarray], list[int]]:
    """The holes as polygons to draw over the layer, and the shape each belongs to.

    Holes are kept as (row, col); a layer of more dimensions gets them on its region's plane
    (the leading coordinates of the region's first vertex).

    Args:
        data: The layer's ``data``.
        holes: Per shape, its holes (``settle_holes(...).holes``).
    """
    rings: list[np.ndarray] = []
    owners: list[int] = []
    for index, own in enumerate(holes):
        lead = np.asarray(data[index], float)[0, :-2]
        for ring in own:
            points = np.asarray(ring, float)[:, -2:]
            if len(points) > 1 and np.allclose(points[0], points[-1]):
                points = points[:-1]  # napari closes a polygon itself
            rings.append(np.hstack([np.tile(lead, (len(points), 1)), points]))
            owners.append(index)
    return rings, owners
