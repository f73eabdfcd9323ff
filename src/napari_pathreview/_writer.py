"""napari writer contributions: Shapes and Labels layers → QuPath-importable GeoJSON.

napari hands data in layer data coordinates: the image's pixels (the frame QuPath expects) when
the layer has its image's scale and translate, and a writer is not told which image that is.
Vertices are written [x, y]; the layer's scale, translate and units go alongside
(``geojson.FRAME_KEY``), so the file reopens in place in napari whatever the layer's frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import LayerExportError
from napari_pathreview.io.geojson import frame_of, rois_from_shapes, write_geojson_rois
from napari_pathreview.io.labels import label_image_to_rois
from napari_pathreview.io.shape_holes import HOLES_KIND, dropped_hole_message, settle_holes


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


def write_shapes_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save a Shapes layer: polygons, rectangles and ellipses as Polygons, paths as LineStrings.

    Feature columns become GeoJSON properties (a "classification" column becomes QuPath's
    classification); holes read from a QuPath file (``io.shape_holes``) are written back.
    """
    from napari.utils.notifications import show_warning

    facts = (attributes.get("metadata") or {}).get("pathreview") or {}
    if facts.get("kind") == HOLES_KIND:
        raise LayerExportError(
            f"layer {attributes.get('name', '')!r} only shows the holes of ROI layer "
            f"{facts.get('holes_of', '')!r}: save that layer instead; its holes are written "
            "as the interior rings of their regions."
        )
    shape_types = list(attributes.get("shape_type") or ["polygon"] * len(data))
    columns = _feature_columns(attributes)
    settled = settle_holes(list(data), shape_types, columns, attributes.get("metadata"))
    for index in settled.dropped:  # its region was reshaped so that it lies outside
        show_warning(dropped_hole_message(str(attributes.get("name", "")), index, columns))
    rois = rois_from_shapes(list(data), shape_types, columns, settled.holes)
    return [str(write_geojson_rois(_with_suffix(path), rois, frame_of(attributes)))]


def _label_plane(data: Any, attributes: dict[str, Any]) -> np.ndarray:
    """The layer's one 2-D plane (leading axes of length 1 dropped); a stack is refused."""
    level = data[0] if attributes.get("multiscale") else data
    labels = np.asarray(level)
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise LayerExportError(
            f"Labels layer {attributes.get('name', '')!r} has shape {labels.shape}: QuPath "
            "GeoJSON holds one 2-D plane. Add the plane you want as its own layer "
            "(viewer.add_labels(layer.data[i])) and save that, or save the stack as .tif."
        )
    return labels


def write_labels_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save a 2-D Labels layer: one polygon (with holes) per connected component per label."""
    rois = label_image_to_rois(_label_plane(data, attributes))
    return [str(write_geojson_rois(_with_suffix(path), rois, frame_of(attributes)))]
