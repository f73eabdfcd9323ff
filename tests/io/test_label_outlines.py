"""A Labels layer saved as GeoJSON is outlined along its pixel EDGES.

Its outlines used to run through the centres of the edge pixels, so QuPath showed each region
half a pixel smaller on every side. Now the file holds the pixels' outer edges (corner-origin,
QuPath's convention) and reading it back by pixel centres gives exactly the pixels painted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview._writer import write_labels_geojson
from napari_pathreview.explain.masks import mask_from_shapes
from napari_pathreview.io import Roi, label_image_to_rois, read_geojson_rois
from napari_pathreview.io.pixel_origin import centre_to_corner


def _save(labels: np.ndarray, tmp_path: Path) -> Path:
    (written,) = write_labels_geojson(str(tmp_path / "labels.geojson"), labels, {})
    return Path(written)


def _rings(path: Path) -> list[list[list[list[float]]]]:
    return [f["geometry"]["coordinates"] for f in json.loads(path.read_text())["features"]]


def _read_back(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The pixels the file covers, rasterised by pixel centres as napari and the metrics do."""
    covered = np.zeros(shape, dtype=bool)
    for roi in read_geojson_rois(path):
        region = mask_from_shapes([roi.data], "polygon", shape)
        for hole in roi.holes:
            region &= ~mask_from_shapes([hole], "polygon", shape)
        covered |= region
    return covered


def test_a_labelled_square_is_written_along_its_pixel_edges(tmp_path: Path) -> None:
    labels = np.zeros((16, 16), dtype=np.int32)
    labels[0:10, 0:10] = 1  # pixels 0..9
    (rings,) = _rings(_save(labels, tmp_path))
    assert rings == [[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]]]


def test_the_square_read_back_covers_the_same_100_pixels(tmp_path: Path) -> None:
    labels = np.zeros((16, 16), dtype=np.int32)
    labels[0:10, 0:10] = 1
    covered = _read_back(_save(labels, tmp_path), labels.shape)
    assert covered.sum() == 100 and np.array_equal(covered, labels == 1)


def _staircase() -> np.ndarray:
    mask = np.zeros((12, 12), dtype=bool)
    for i in range(10):
        mask[i + 1, i : i + 2] = True  # a diagonal band, two pixels wide
    return mask


def _diagonal_pixels() -> np.ndarray:
    mask = np.zeros((8, 8), dtype=bool)
    mask[[1, 2, 3, 5], [1, 2, 3, 4]] = True  # touching at corners only, and one apart
    return mask


def _irregular() -> np.ndarray:
    return np.random.default_rng(7).random((24, 20)) < 0.55


def _single_pixel_and_line() -> np.ndarray:
    mask = np.zeros((9, 9), dtype=bool)
    mask[1, 1] = True
    mask[4, 2:8] = True
    return mask


@pytest.mark.parametrize("make", [_staircase, _diagonal_pixels, _irregular, _single_pixel_and_line])
def test_diagonal_and_irregular_regions_read_back_pixel_for_pixel(make, tmp_path: Path) -> None:
    mask = make()
    covered = _read_back(_save(mask.astype(np.uint8), tmp_path), mask.shape)
    assert np.array_equal(covered, mask)


def test_a_region_with_a_hole_is_an_exterior_and_an_interior_ring_on_pixel_edges(
    tmp_path: Path,
) -> None:
    labels = np.zeros((12, 12), dtype=np.int32)
    labels[1:9, 2:10] = 3
    labels[3:5, 4:7] = 0  # a 2×3 hole: rows 3..4, cols 4..6
    path = _save(labels, tmp_path)
    (rings,) = _rings(path)
    assert len(rings) == 2
    exterior, hole = ({(x, y) for x, y in ring} for ring in rings)
    assert exterior == {(2, 1), (10, 1), (10, 9), (2, 9)}
    assert hole == {(4, 3), (7, 3), (7, 5), (4, 5)}
    assert np.array_equal(_read_back(path, labels.shape), labels == 3)


def test_labels_keep_their_values_and_class_names_per_region(tmp_path: Path) -> None:
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[0:3, 0:3] = 1
    labels[5:9, 5:9] = 2
    covered = {roi.properties["label"]: roi for roi in read_geojson_rois(_save(labels, tmp_path))}
    assert sorted(covered) == [1, 2]
    for value, roi in covered.items():
        region = mask_from_shapes([roi.data], "polygon", labels.shape)
        assert np.array_equal(region, labels == value)


def _coverage(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """How many of the file's polygons cover each pixel (by pixel centres, holes cut)."""
    count = np.zeros(shape, dtype=np.int32)
    for roi in read_geojson_rois(path):
        region = mask_from_shapes([roi.data], "polygon", shape)
        for hole in roi.holes:
            region &= ~mask_from_shapes([hole], "polygon", shape)
        count += region
    return count


def _noise(density: float) -> np.ndarray:
    return np.random.default_rng(11).random((160, 192)) < density


def _blobs() -> np.ndarray:
    """Smoothed noise: blobs with holes, islands in the holes, and corner contacts."""
    from scipy import ndimage

    noise = np.random.default_rng(5).random((224, 192))
    return ndimage.gaussian_filter(noise, 2.0) > 0.5


@pytest.mark.parametrize(
    "make",
    [lambda: _noise(0.3), lambda: _noise(0.5), lambda: _noise(0.7), _blobs],
    ids=["noise-0.3", "noise-0.5", "noise-0.7", "blobs"],
)
def test_large_random_masks_read_back_every_pixel_exactly_once(make, tmp_path: Path) -> None:
    mask = make()
    coverage = _coverage(_save(mask.astype(np.uint8), tmp_path), mask.shape)
    assert np.array_equal(coverage, mask.astype(np.int32))  # no pixel lost, none twice


def _even_odd_coverage(rois: list[Roi], shape: tuple[int, int], label: int) -> np.ndarray:
    """How many ``label`` polygons cover each pixel: each polygon filled by the even-odd rule
    over its rings' vertical edges (exact for rings on pixel corners, and quick where skimage's
    fill would test every pixel of a box against thousands of vertices)."""
    count = np.zeros(shape, dtype=np.int32)
    for roi in rois:
        if roi.properties["label"] != label:
            continue
        rings = [np.rint(centre_to_corner(r)).astype(int) for r in (roi.data, *roi.holes)]
        (top, left), (bottom, right) = rings[0].min(axis=0), rings[0].max(axis=0)
        ends = np.zeros((bottom - top + 1, right - left + 1), dtype=np.uint8)
        for ring in rings:
            following = np.roll(ring, -1, axis=0)
            upright = ring[:, 1] == following[:, 1]
            assert np.all(upright | (ring[:, 0] == following[:, 0])), "an edge off the lattice"
            for end in (ring[upright], following[upright]):
                np.bitwise_xor.at(ends, (end[:, 0] - top, end[:, 1] - left), 1)
        inside = np.bitwise_xor.accumulate(np.bitwise_xor.accumulate(ends, axis=0), axis=1)
        count[top:bottom, left:right] += inside[:-1, :-1]
    return count


def test_a_large_ragged_label_image_is_outlined_covering_every_pixel_exactly_once() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((1536, 1280)), 6)
    labels = np.digitize(smooth, [0.49, 0.5, 0.51]).astype(np.int32)  # touching bands 1..3
    labels[rng.random(labels.shape) < 0.003] = 0  # specks: holes, notches, corner contacts
    rois = label_image_to_rois(labels)
    for value in (1, 2, 3):
        coverage = _even_odd_coverage(rois, labels.shape, value)
        assert np.array_equal(coverage, (labels == value).astype(np.int32))


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (
            (slice(1, 3), slice(1, 3), slice(3, 5), slice(3, 5)),  # ╲ diagonal
            [
                [[[3, 3], [5, 3], [5, 5], [3, 5], [3, 3]]],
                [[[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]],
            ],
        ),
        (
            (slice(1, 3), slice(3, 5), slice(3, 5), slice(1, 3)),  # ╱ diagonal
            [
                [[[3, 3], [3, 5], [1, 5], [1, 3], [3, 3]]],
                [[[3, 1], [5, 1], [5, 3], [3, 3], [3, 1]]],
            ],
        ),
    ],
    ids=["down-right", "down-left"],
)
def test_regions_touching_at_a_corner_are_two_polygons_sharing_that_corner(
    pixels, expected, tmp_path: Path
) -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[pixels[0], pixels[1]] = mask[pixels[2], pixels[3]] = True
    path = _save(mask.astype(np.uint8), tmp_path)
    assert _rings(path) == expected
    assert np.array_equal(_coverage(path, mask.shape), mask.astype(np.int32))


def test_a_hole_touching_the_outside_at_a_corner_stays_a_hole(tmp_path: Path) -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:5, 0:5] = True
    mask[4, 4] = False  # a notch in the corner...
    mask[3, 3] = False  # ...and a hole touching it at a corner
    path = _save(mask.astype(np.uint8), tmp_path)
    assert _rings(path) == [
        [
            [[0, 0], [5, 0], [5, 4], [4, 4], [4, 5], [0, 5], [0, 0]],
            [[3, 4], [4, 4], [4, 3], [3, 3], [3, 4]],
        ]
    ]
    assert np.array_equal(_coverage(path, mask.shape), mask.astype(np.int32))


def test_an_island_touching_its_hole_at_a_corner_is_a_polygon_of_its_own(tmp_path: Path) -> None:
    mask = np.ones((7, 7), dtype=bool)
    mask[1:6, 1:6] = False  # a frame around a hole...
    mask[1, 1] = True  # ...with a pixel inside its corner
    mask[2:4, 2:4] = True  # an island touching that pixel at a corner
    path = _save(mask.astype(np.uint8), tmp_path)
    assert _rings(path) == [
        [
            [[0, 0], [7, 0], [7, 7], [0, 7], [0, 0]],
            [[2, 2], [1, 2], [1, 6], [6, 6], [6, 1], [2, 1], [2, 2]],
        ],
        [[[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]],
    ]
    assert np.array_equal(_coverage(path, mask.shape), mask.astype(np.int32))


@pytest.mark.parametrize("offset", [-3, 10**12], ids=["negative", "beyond-the-pixel-count"])
def test_label_values_of_any_size_are_outlined_like_small_ones(offset, tmp_path: Path) -> None:
    small = np.zeros((12, 12), dtype=np.int64)
    small[1:5, 1:9], small[6:11, 2:6], small[7:9, 3:5] = 1, 2, 0
    large = np.where(small > 0, small + offset, 0)
    expected, written = _rings(_save(small, tmp_path)), _rings(_save(large, tmp_path / "x"))
    assert written == expected
