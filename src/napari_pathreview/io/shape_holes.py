"""Polygon holes carried by a napari Shapes layer, which cannot hold them itself.

QuPath's regions with a cut-out reach napari as Shapes, which keep the outline only. So each
shape gets an id in the ``ROI_ID`` feature column and its holes (rings in the layer's data
coordinates) are kept in ``metadata["pathreview"]["holes"]`` under that id. napari deletes and
reorders feature rows with their shapes, so the holes stay with their region; a shape drawn
later gets ``NO_ID`` (napari's default would copy the last row's id, and with it its holes).
A hole no longer inside its region's outline (the region was dragged away from it) is
dropped where holes are used, so no polygon is written with a hole outside it. napari draws
no hole: the masks (``explain.masks.cut_holes``) and the GeoJSON written honour them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from skimage.measure import points_in_poly

from napari_pathreview.io.geojson import ROI_ID, Roi, ellipse_ring

logger = logging.getLogger(__name__)

NO_ID = -1
HOLES_KEY = "holes"


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
    metadata["pathreview"] = facts
    return {**kwargs, "features": features, "feature_defaults": defaults, "metadata": metadata}


def shape_holes(
    data: Sequence[np.ndarray],
    shape_types: Sequence[str],
    features: Any,
    metadata: Mapping[str, Any] | None,
) -> list[tuple[np.ndarray, ...]]:
    """The holes of each shape of a layer, in its data coordinates (row, col).

    Args:
        data: The layer's ``data``.
        shape_types: Its ``shape_type`` list.
        features: Its ``features`` (a DataFrame, or a mapping of columns).
        metadata: Its ``metadata``.
    """
    stored = ((metadata or {}).get("pathreview") or {}).get(HOLES_KEY) or {}
    if not stored or features is None or ROI_ID not in features:
        return [()] * len(data)
    ids = list(features[ROI_ID])
    return [
        _inside(data[index], shape_types[index], stored.get(_key(ids, index), []))
        for index in range(len(data))
    ]


def _key(ids: list[Any], index: int) -> str:
    if index >= len(ids) or ids[index] is None or ids[index] == NO_ID:
        return ""
    try:
        return str(int(ids[index]))
    except (TypeError, ValueError):
        return ""


def _inside(vertices: np.ndarray, shape_type: str, rings: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """The rings lying inside the shape's outline; the others are dropped and logged."""
    if not rings:
        return ()
    outline = np.asarray(vertices, float)[:, -2:]
    if shape_type == "ellipse" and outline.shape[0] == 4:
        outline = ellipse_ring(outline)
    kept = []
    for ring in rings:
        points = np.asarray(ring, float)
        if points.ndim == 2 and points.shape[0] >= 3 and points_in_poly(points, outline).all():
            kept.append(points)
        else:
            logger.warning("a hole no longer inside its region (moved or reshaped) is dropped")
    return tuple(kept)
