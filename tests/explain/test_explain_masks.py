"""ROI masks from napari Shapes (row, col vertices), Labels and MIAS circles."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.explain.masks import mask_from_labels, mask_from_mias, mask_from_shapes
from napari_pathreview.io.mias import MiasAnnotation


def test_rectangle_in_row_col_order() -> None:
    rect = np.array([[2, 1], [2, 5], [4, 5], [4, 1]])  # rows 2-4, cols 1-5
    mask = mask_from_shapes([rect], "rectangle", (10, 10))
    rows, cols = np.nonzero(mask)
    assert rows.min() == 2 and rows.max() <= 4
    assert cols.min() == 1 and cols.max() <= 5
    assert not mask[6:, :].any()


def test_polygon_triangle_area() -> None:
    tri = np.array([[0, 0], [0, 40], [40, 0]])
    mask = mask_from_shapes([tri], ["polygon"], (50, 50))
    # skimage fills boundary pixels: pixels with row + col <= 40, i.e. 41 + 40 + ... + 1.
    assert mask.sum() == 41 * 42 // 2


def test_axis_aligned_ellipse_area_and_extent() -> None:
    # napari ellipse: 4 bounding-box corners; rows 10-30 (radius 10), cols 20-60 (radius 20).
    box = np.array([[10, 20], [10, 60], [30, 60], [30, 20]], float)
    mask = mask_from_shapes([box], ["ellipse"], (64, 80))
    assert mask.sum() == pytest.approx(np.pi * 10 * 20, rel=0.05)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max()) == (10, 30)
    assert (cols.min(), cols.max()) == (20, 60)


def test_rotated_ellipse_follows_its_box() -> None:
    centre = np.array([50.0, 50.0])
    u, v = np.array([1.0, 1.0]) / np.sqrt(2), np.array([1.0, -1.0]) / np.sqrt(2)
    corners = np.array([-30 * u - 10 * v, 30 * u - 10 * v, 30 * u + 10 * v, -30 * u + 10 * v])
    mask = mask_from_shapes([corners + centre], "ellipse", (100, 100))
    assert mask.sum() == pytest.approx(np.pi * 30 * 10, rel=0.05)
    assert mask[70, 70] and mask[30, 30] and not mask[70, 30]


def test_union_of_shapes_and_3d_vertices_use_last_two_axes() -> None:
    a = np.array([[0, 0, 0], [0, 0, 3], [0, 3, 3], [0, 3, 0]])
    b = np.array([[0, 6, 6], [0, 6, 9], [0, 9, 9], [0, 9, 6]])
    mask = mask_from_shapes([a, b], ["rectangle", "rectangle"], (10, 10))
    assert mask[1, 1] and mask[7, 7] and not mask[5, 5]


def test_open_shapes_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="encloses no area"):
        mask_from_shapes([np.array([[0, 0], [5, 5]])], ["line"], (10, 10))


def test_shape_type_count_mismatch_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="shape types"):
        mask_from_shapes([np.zeros((4, 2))], ["polygon", "ellipse"], (10, 10))


def test_labels_any_and_one_label() -> None:
    labels = np.array([[0, 1, 2], [2, 0, 1]])
    assert mask_from_labels(labels).tolist() == [[False, True, True], [True, False, True]]
    assert mask_from_labels(labels, 2).tolist() == [[False, False, True], [True, False, False]]


def test_mias_circle_scaled_to_downsampled_image() -> None:
    # y is from the bottom: row = 1024 - 512 = 512; a 64-px radius at 1024 → 16 px at 256.
    ann = MiasAnnotation("mdb001", "G", "CIRC", "B", x=256, y=512, radius=64)
    mask = mask_from_mias([ann], (256, 256))
    assert mask.sum() == pytest.approx(np.pi * 16**2, rel=0.06)
    rows, cols = np.nonzero(mask)
    assert rows.mean() == pytest.approx(128, abs=1)
    assert cols.mean() == pytest.approx(64, abs=1)


def test_mias_circle_holds_every_pixel_at_its_radius() -> None:
    # mdb005's second circle: radius 26 at row 1024 - 168 = 856, col 500; 24² + 10² = 26²
    ann = MiasAnnotation("mdb005", "F", "CIRC", "B", x=500, y=168, radius=26)
    mask = mask_from_mias([ann], (1024, 1024))
    rows, cols = np.mgrid[:1024, :1024]
    within = (rows - 856) ** 2 + (cols - 500) ** 2 <= 26**2
    assert mask[856 + 24, 500 + 10] and mask[856 + 26, 500]
    assert np.array_equal(mask, within)


def test_mias_rows_without_circle_give_empty_mask() -> None:
    normal = MiasAnnotation("mdb003", "D", "NORM", None, None, None, None)
    assert not mask_from_mias([normal], (1024, 1024)).any()
