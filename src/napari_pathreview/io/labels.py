"""Label images → ROI polygons, so a painted Labels layer can be saved for QuPath.

Each label value becomes one polygon per connected component, with its holes, traced
along pixel centres by OpenCV (8-connected components, two-level contour hierarchy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.geojson import Roi


def label_image_to_rois(labels: Any, class_names: dict[int, str] | None = None) -> list[Roi]:
    """Trace every non-zero label of a 2-D label image.

    Args:
        labels: H×W integer array (0 = background).
        class_names: Optional label value → QuPath classification name.

    Returns:
        One polygon ROI per connected component, properties ``label`` (and
        ``classification`` when named), vertices in (row, col) order.

    Raises:
        InvalidInputError: The array is not 2-D integers.
    """
    import cv2

    array = np.asarray(labels)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InvalidInputError(
            f"expected a 2-D integer label image, got {array.shape} {array.dtype}"
        )
    rois: list[Roi] = []
    for value in np.unique(array):
        if value == 0:
            continue
        mask = (array == value).astype(np.uint8)
        contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None:
            continue
        props: dict[str, Any] = {"label": int(value)}
        if class_names and int(value) in class_names:
            props["classification"] = class_names[int(value)]
        for index, contour in enumerate(contours):
            if hierarchy[0][index][3] != -1:
                continue  # a hole: attached to its parent below
            exterior = _rc(contour)
            holes = []
            child = hierarchy[0][index][2]
            while child != -1:
                holes.append(_rc(contours[child]))
                child = hierarchy[0][child][0]
            rois.append(Roi(exterior, "polygon", dict(props), tuple(holes)))
    return rois


def _rc(contour: np.ndarray) -> np.ndarray:
    points = contour.reshape(-1, 2).astype(float)[:, [1, 0]]  # OpenCV (x, y) → (row, col)
    if len(points) == 1:  # single pixel: a tiny square so QuPath gets a valid polygon
        r, c = points[0]
        points = np.array(
            [[r - 0.5, c - 0.5], [r - 0.5, c + 0.5], [r + 0.5, c + 0.5], [r + 0.5, c - 0.5]]
        )
    elif len(points) == 2:  # one-pixel-wide line: widen to a thin quadrilateral
        (r0, c0), (r1, c1) = points
        points = np.array([[r0, c0], [r1, c1], [r1 + 0.01, c1 + 0.01], [r0 + 0.01, c0 + 0.01]])
    return points
