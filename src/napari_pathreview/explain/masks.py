"""ROI masks from what readers draw: napari Shapes, napari Labels, and MIAS circles.

Shapes follow napari's data format: each shape is an (N, D) array of vertices in
(row, col) order (extra leading dimensions such as z are ignored: the last two are used);
a rectangle is its 4 corners; an ellipse is the 4 corners of its (possibly rotated)
bounding box, as napari stores it. Coordinates are napari's, pixel ``i`` centred on ``i``
(``io.geojson`` converts GeoJSON ROIs on reading), and a pixel belongs to a shape when its
centre lies inside: QuPath's square (0, 0)–(10, 10) is napari's −0.5..9.5, pixels 0..9.
GeoJSON ROIs (``io.geojson.Roi``) may also have holes, which every mask made from them
cuts out (:func:`cut_holes`): QuPath draws a region with a cut-out, napari Shapes cannot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from skimage.draw import polygon as draw_polygon

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.mias import MIAS_SIZE, film_circle

__all__ = [
    "MIAS_SIZE",
    "cut_holes",
    "mask_from_labels",
    "mask_from_mias",
    "mask_from_rois",
    "mask_from_shapes",
]

_AREA_SHAPES = ("polygon", "rectangle", "ellipse")


def _image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) < 2 or shape[0] <= 0 or shape[1] <= 0:
        raise InvalidInputError(f"image_shape must give (rows, cols, ...), got {image_shape}")
    return shape[0], shape[1]


def _vertices(shape_data: np.ndarray) -> np.ndarray:
    verts = np.asarray(shape_data, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] < 2 or verts.shape[0] < 2:
        raise InvalidInputError(f"a shape needs (N, 2+) vertices in (row, col), got {verts.shape}")
    if not np.all(np.isfinite(verts)):
        raise InvalidInputError("a shape's vertices must be finite numbers (found NaN or inf)")
    return verts[:, -2:]


def require_nonempty(mask: np.ndarray, source: object) -> np.ndarray:
    """``mask`` if any pixel is set; an empty ROI would score a blank CAM as a perfect match.

    Raises:
        InvalidInputError: Naming ``source`` (the ROI file): its regions cover no pixel of
            the image (outside it, or degenerate).
    """
    if not mask.any():
        raise InvalidInputError(
            f"{source}: the ROI covers no pixel of the {mask.shape[0]}×{mask.shape[1]} image "
            "(outside it, or of zero area); check that the ROI belongs to this image"
        )
    return mask


def _fill_polygon(mask: np.ndarray, verts: np.ndarray) -> None:
    if verts.shape[0] < 3:
        raise InvalidInputError(
            f"a polygon needs at least 3 vertices, got {verts.shape[0]}; redraw or delete it"
        )
    rr, cc = draw_polygon(verts[:, 0], verts[:, 1], shape=mask.shape)
    mask[rr, cc] = True


def _span(centre: float, reach: float, size: int) -> tuple[int, int]:
    return max(int(np.floor(centre - reach)), 0), min(int(np.ceil(centre + reach)) + 1, size)


def _fill_ellipse(mask: np.ndarray, verts: np.ndarray) -> None:
    """Fill the ellipse inscribed in a (possibly rotated) 4-corner bounding box."""
    if verts.shape[0] != 4:
        raise InvalidInputError(f"an ellipse is given by 4 corner points, got {verts.shape[0]}")
    centre = verts.mean(axis=0)
    axis1, axis2 = verts[1] - verts[0], verts[3] - verts[0]
    r1, r2 = np.linalg.norm(axis1) / 2.0, np.linalg.norm(axis2) / 2.0
    if r1 <= 0 or r2 <= 0:
        return
    u1, u2 = axis1 / (2.0 * r1), axis2 / (2.0 * r2)
    reach = max(r1, r2)
    r0, r_end = _span(centre[0], reach, mask.shape[0])
    c0, c_end = _span(centre[1], reach, mask.shape[1])
    if r0 >= r_end or c0 >= c_end:
        return
    rows, cols = np.mgrid[r0:r_end, c0:c_end]
    d = np.stack([rows - centre[0], cols - centre[1]], axis=-1)
    mask[r0:r_end, c0:c_end] |= inside_ellipse(d @ u1, d @ u2, r1, r2)


def inside_ellipse(along1: Any, along2: Any, r1: float, r2: float) -> np.ndarray:
    """Whether points ``along1``/``along2`` from the centre, on the axes of radii ``r1``/``r2``,
    lie in the ellipse, its rim included: compared without dividing, so a pixel exactly on
    the rim (24² + 10² = 26²) is not lost to rounding. The one rule for MIAS circles and
    napari ellipses, so the dock and ``explain`` count the same pixels."""
    return (np.asarray(along1) * r2) ** 2 + (np.asarray(along2) * r1) ** 2 <= (r1 * r2) ** 2


def mask_from_shapes(
    data: Sequence[np.ndarray],
    shape_types: str | Sequence[str],
    image_shape: Sequence[int],
) -> np.ndarray:
    """Rasterise napari Shapes (polygons, rectangles, ellipses) into one boolean mask.

    Args:
        data: The Shapes layer's ``data``: one vertex array per shape, (row, col) order.
        shape_types: The layer's ``shape_type`` list, or one type for all shapes.
        image_shape: (rows, cols) of the image the shapes were drawn on.

    Returns:
        Boolean mask of ``image_shape[:2]``, True inside any shape (their union).

    Raises:
        InvalidInputError: unknown or open shape types (lines and paths enclose no area),
            a count mismatch, or malformed vertices.
    """
    shape = _image_shape(image_shape)
    data = list(data)
    types = [shape_types] * len(data) if isinstance(shape_types, str) else list(shape_types)
    if len(types) != len(data):
        raise InvalidInputError(f"{len(data)} shapes but {len(types)} shape types")
    mask = np.zeros(shape, dtype=bool)
    for verts, kind in zip(data, types, strict=True):
        kind = str(kind).lower()
        if kind not in _AREA_SHAPES:
            raise InvalidInputError(
                f"shape type {kind!r} encloses no area; draw a polygon, rectangle or ellipse"
            )
        points = _vertices(verts)
        if kind == "ellipse":
            _fill_ellipse(mask, points)
        else:
            _fill_polygon(mask, points)
    return mask


def cut_holes(mask: np.ndarray, holes: Sequence[np.ndarray]) -> np.ndarray:
    """``mask`` less every pixel whose centre lies inside one of ``holes``: the one rule by
    which a GeoJSON ROI's interior rings (napari (row, col), on ``mask``'s grid) are honoured.

    Raises:
        InvalidInputError: A hole with fewer than 3 vertices or non-finite ones.
    """
    if not len(holes):
        return mask
    cut = np.zeros(mask.shape, dtype=bool)
    for ring in holes:
        verts = _vertices(ring)
        if verts.shape[0] < 3:
            raise InvalidInputError(
                f"a hole needs at least 3 vertices, got {verts.shape[0]}; redraw or delete it"
            )
        _fill_polygon(cut, verts)
    return mask & ~cut


def mask_from_rois(rois: Sequence[Any], image_shape: Sequence[int]) -> np.ndarray:
    """The union of GeoJSON area ROIs (``io.geojson.Roi``), each with its holes cut out.

    Each ROI's holes are its own: a hole of one region does not cut an overlapping other.

    Raises:
        InvalidInputError: As :func:`mask_from_shapes`, led by the ROI's ``source`` (its
            file and feature) when it was read from one.
    """
    mask = np.zeros(_image_shape(image_shape), dtype=bool)
    for roi in rois:
        try:
            part = mask_from_shapes([roi.data], roi.shape_type, image_shape)
            mask |= cut_holes(part, roi.holes)
        except InvalidInputError as error:
            if not roi.source:
                raise
            raise InvalidInputError(f"{roi.source}: {error}") from error
    return mask


def mask_from_labels(labels: np.ndarray, label: int | None = None) -> np.ndarray:
    """A boolean ROI mask from a napari Labels array: any label (> 0), or one ``label``."""
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InvalidInputError(f"labels must be a 2-D array, got shape {arr.shape}")
    return arr > 0 if label is None else arr == label


def mask_from_mias(
    annotations: Iterable[object],
    image_shape: Sequence[int],
    source_shape: Sequence[int] = (MIAS_SIZE, MIAS_SIZE),
) -> np.ndarray:
    """The union of a MIAS image's ROI circles, scaled to ``image_shape``.

    Args:
        annotations: ``io.MiasAnnotation`` rows of ONE image (objects with ``row``, ``col``
            and ``radius``); rows without a centre or radius (normal images, diffuse
            calcifications) add nothing.
        image_shape: (rows, cols) of the image the mask is for (e.g. a 256×256 copy).
        source_shape: (rows, cols) the coordinates refer to: 1024×1024 for mini-MIAS.

    Returns:
        Boolean mask of ``image_shape[:2]``; all False when no row has a circle.
    """
    rows, cols = _image_shape(image_shape)
    source = _image_shape(source_shape)
    mask = np.zeros((rows, cols), dtype=bool)
    grid_r, grid_c = np.ogrid[:rows, :cols]
    for ann in annotations:
        row, col = getattr(ann, "row", None), getattr(ann, "col", None)
        radius = getattr(ann, "radius", None)
        if row is None or col is None or radius is None:
            continue
        if not all(np.isfinite(v) for v in (row, col, radius)) or radius <= 0:
            raise InvalidInputError(
                f"MIAS ROI ({row}, {col}) radius {radius}: needs finite coordinates and a "
                "positive radius"
            )
        # a circle of radius r around the centre of pixel (row, col) of the source film, on
        # this image by the viewer's rule (io.mias.film_circle), its rim included
        cr, cc, r_rows, r_cols = film_circle(ann, (rows, cols), source)
        mask |= inside_ellipse(grid_r - cr, grid_c - cc, r_rows, r_cols)
    return mask
