"""napari writer contributions: Shapes and Labels layers → QuPath-importable GeoJSON.

napari hands data in layer data coordinates, which for layers drawn on an image are that
image's pixel coordinates, the frame QuPath expects. Vertices are written [x, y]; the layer's
scale, translate and units go alongside (``geojson.FRAME_KEY``), so the file reopens in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.io.geojson import rois_from_shapes, write_geojson_rois
from napari_pathreview.io.labels import label_image_to_rois


def _with_suffix(path: str) -> Path:
    target = Path(path)
    return (
        target if target.suffix.lower() in (".geojson", ".json") else target.with_suffix(".geojson")
    )


def _feature_columns(attributes: dict[str, Any]) -> dict[str, list[Any]]:
    features = attributes.get("features")
    if features is not None and hasattr(features, "to_dict"):
        return {str(k): list(v) for k, v in features.to_dict(orient="list").items()}
    properties = attributes.get("properties") or {}
    return {str(k): list(v) for k, v in properties.items()}


def _frame(attributes: dict[str, Any]) -> dict[str, list[Any]]:
    """The layer's 2-D ``scale``, ``translate`` and ``units``: where it sits over its image."""
    frame: dict[str, list[Any]] = {}
    for key, convert in (("scale", float), ("translate", float), ("units", str)):
        values = attributes.get(key)
        if values is not None and len(values) >= 2:
            frame[key] = [convert(v) for v in list(values)[-2:]]
    return frame


def write_shapes_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save a Shapes layer: polygons, rectangles and ellipses as Polygons, paths as LineStrings.

    Feature columns become GeoJSON properties (a "classification" column becomes QuPath's
    classification).
    """
    shape_types = attributes.get("shape_type") or ["polygon"] * len(data)
    rois = rois_from_shapes(list(data), list(shape_types), _feature_columns(attributes))
    return [str(write_geojson_rois(_with_suffix(path), rois, _frame(attributes)))]


def write_labels_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save a 2-D Labels layer: one polygon (with holes) per connected component per label."""
    level = data[0] if attributes.get("multiscale") else data
    labels = np.asarray(level)
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    rois = label_image_to_rois(labels)
    return [str(write_geojson_rois(_with_suffix(path), rois, _frame(attributes)))]
