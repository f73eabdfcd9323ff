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
from napari_pathreview.io import read_geojson_rois


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
