"""A GeoJSON ROI with a hole (QuPath's region with a cut-out) leaves the hole out of every mask.

The ROI is QuPath's 20×20 square (0, 0)–(20, 20) with the 10×10 hole (5, 5)–(15, 15): by the
pixel-centre rule it covers 400 − 100 = 300 pixels wherever a GeoJSON ROI becomes a mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.explain.evaluate import roi_mask_from_geojson, scored_map
from napari_pathreview.inference.preprocess import decode
from napari_pathreview.review.ordering import reviewer_roi_mask
from napari_pathreview.training.patches import geojson_rois, rois_mask

OUTER = [[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]
HOLE = [[5, 5], [5, 15], [15, 15], [15, 5], [5, 5]]
SQUARE_WITH_HOLE = {
    "type": "Feature",
    "properties": {"classification": {"name": "Tumor"}},
    "geometry": {"type": "Polygon", "coordinates": [OUTER, HOLE]},
}


def _expected(shape: tuple[int, int] = (32, 32)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[0:20, 0:20] = True
    mask[5:15, 5:15] = False
    return mask


def _roi_file(tmp_path: Path) -> Path:
    path = tmp_path / "tumour.geojson"
    path.write_text(json.dumps(SQUARE_WITH_HOLE))
    return path


def test_explain_roi_mask_leaves_the_hole_out(tmp_path: Path) -> None:
    mask = roi_mask_from_geojson(_roi_file(tmp_path), (32, 32))
    assert mask.sum() == 300
    np.testing.assert_array_equal(mask, _expected())


def test_review_ordering_roi_mask_leaves_the_hole_out() -> None:
    decoded = decode(np.full((32, 32, 3), 200, np.uint8))
    mask = reviewer_roi_mask(decoded, SQUARE_WITH_HOLE, "a.png")
    assert mask is not None and mask.sum() == 300
    np.testing.assert_array_equal(mask, _expected())


def test_training_roi_mask_leaves_the_hole_out(tmp_path: Path) -> None:
    rois = geojson_rois(str(_roi_file(tmp_path)), tmp_path, "a.png")
    mask = rois_mask(rois, (32, 32), 1.0, "a.png")
    assert mask.sum() == 300
    np.testing.assert_array_equal(mask, _expected())


def test_training_roi_mask_scales_the_hole_with_the_image(tmp_path: Path) -> None:
    """At half the resolution the 20×20 square is 10×10 pixels and a 12×12 hole 6×6."""
    wide_hole = [[4, 4], [4, 16], [16, 16], [16, 4], [4, 4]]
    polygon = {"type": "Polygon", "coordinates": [OUTER, wide_hole]}
    rois = geojson_rois(json.dumps(polygon), tmp_path, "a.png")
    assert rois_mask(rois, (16, 16), 0.5, "a.png").sum() == 100 - 36


def test_a_hole_of_one_roi_does_not_cut_an_overlapping_roi(tmp_path: Path) -> None:
    solid = {"type": "Feature", "properties": {},
             "geometry": {"type": "Polygon", "coordinates": [HOLE]}}  # fmt: skip
    path = tmp_path / "two.geojson"
    both = {"type": "FeatureCollection", "features": [SQUARE_WITH_HOLE, solid]}
    path.write_text(json.dumps(both))
    assert roi_mask_from_geojson(path, (32, 32)).sum() == 400


def test_explain_scores_a_cam_against_the_roi_without_its_hole(tmp_path: Path) -> None:
    """A CAM lit on the whole square: IoU 300/400, Dice 2·300/(300 + 400) (1.0 with the hole
    filled); the energy outside the ROI is the hole's share."""
    cam = np.zeros((32, 32))
    cam[0:20, 0:20] = 1.0
    scores = scored_map(cam, roi_mask_from_geojson(_roi_file(tmp_path), (32, 32)), 0.5)
    assert scores["iou"] == pytest.approx(0.75)
    assert scores["dice"] == pytest.approx(600 / 700)
    assert scores["energy"] == pytest.approx(0.75)
