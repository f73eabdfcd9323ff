"""Label images → ROI polygons, so a painted Labels layer can be saved for QuPath.

Each label value becomes one polygon per connected component (8-connected, as napari's fill
and OpenCV's contours join diagonal pixels), with its holes. Outlines run along the pixel
EDGES, not through the centres of the edge pixels: a 10×10 square at pixels 0..9 becomes the
GeoJSON (QuPath) square (0, 0)–(10, 10), the region QuPath measures is the pixels painted, and
rasterising the file by pixel centres (napari, ``explain.masks``) gives back exactly those
pixels. Rings are traced on the lattice of pixel corners (``io.pixel_origin``'s CORNER rule)
and converted to napari's centre-origin ``Roi`` coordinates once, here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.edge_rings import edge_polygons
from napari_pathreview.io.geojson import Roi
from napari_pathreview.io.pixel_origin import CORNER, corner_to_centre


def label_image_to_rois(labels: Any, class_names: dict[int, str] | None = None) -> list[Roi]:
    """Trace every non-zero label of a 2-D label image along its pixel edges.

    Args:
        labels: H×W integer array (0 = background).
        class_names: Optional label value → QuPath classification name.

    Returns:
        One polygon ROI per connected component (two components touching only at a corner
        are two polygons), with its holes; properties ``label`` (and ``classification``
        when named); vertices in napari (row, col) order, centre-origin.

    Raises:
        InvalidInputError: The array is not 2-D integers.
    """
    array = np.asarray(labels)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InvalidInputError(
            f"expected a 2-D integer label image, got {array.shape} {array.dtype}"
        )
    rois: list[Roi] = []
    for value, box in _label_boxes(array):
        props: dict[str, Any] = {"label": value}
        if class_names and value in class_names:
            props["classification"] = class_names[value]
        origin = np.array([box[0].start, box[1].start], dtype=float)
        for exterior, holes in edge_polygons(array[box] == value):
            rois.append(
                Roi(
                    _napari(exterior + origin),
                    "polygon",
                    dict(props),
                    tuple(_napari(hole + origin) for hole in holes),
                )
            )
    return rois


def _label_boxes(array: np.ndarray) -> list[tuple[int, tuple[slice, slice]]]:
    """Each non-zero label value, ascending, with the bounding box of its pixels.

    Tracing each label inside its box, not over the whole image, is what keeps a slide-sized
    layer with thousands of small regions fast. Values far beyond the image's pixel count (or
    negative) are replaced by their rank first, so the table of boxes stays as small as the
    image.
    """
    if array.size == 0:
        return []
    values = None
    dense = array.view(np.uint8) if array.dtype == bool else array
    if dense.min() < 0 or dense.max() > max(dense.size, 1 << 16):
        values, inverse = np.unique(dense, return_inverse=True)
        dense = np.where(dense == 0, 0, inverse.reshape(dense.shape) + 1)
    boxes = ndimage.find_objects(dense)
    named = [(i + 1 if values is None else int(values[i]), box) for i, box in enumerate(boxes)]
    return [(value, box) for value, box in named if box is not None]


def _napari(ring: np.ndarray) -> np.ndarray:
    return corner_to_centre(ring, CORNER)
