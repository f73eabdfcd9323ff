"""ROI metrics follow seed 004's protocol; values checked against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.explain.metrics import (
    binarize_cam,
    cam_is_empty,
    energy_in_roi,
    normalize_cam,
    pointing_game,
    roi_dice,
    roi_iou,
    roi_scores,
)


def _cam_and_mask() -> tuple[np.ndarray, np.ndarray]:
    # CAM hot in columns 0-1 of a 4x4 grid (8 px); ROI = column 1-2 (8 px); overlap 4 px.
    cam = np.zeros((4, 4), np.float32)
    cam[:, :2] = 10.0
    mask = np.zeros((4, 4), bool)
    mask[:, 1:3] = True
    return cam, mask


def test_iou_hand_computed() -> None:
    cam, mask = _cam_and_mask()
    assert roi_iou(cam, mask) == pytest.approx(4 / 12)


def test_dice_hand_computed() -> None:
    cam, mask = _cam_and_mask()
    assert roi_dice(cam, mask) == pytest.approx(2 * 4 / 16)


def test_threshold_selects_normalised_levels() -> None:
    cam = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])  # normalised 0, .25, .5, .75, 1
    mask = np.array([[0, 0, 0, 1, 1]], bool)
    assert roi_iou(cam, mask, threshold=0.5) == pytest.approx(2 / 3)
    assert roi_iou(cam, mask, threshold=0.75) == pytest.approx(1.0)
    assert binarize_cam(cam, 0.25).tolist() == [[False, True, True, True, True]]


def test_cam_is_min_max_normalised_so_offset_and_scale_do_not_matter() -> None:
    cam, mask = _cam_and_mask()
    assert roi_iou(cam * 7 - 3, mask) == pytest.approx(roi_iou(cam, mask))


def test_mask_is_resized_to_cam_size() -> None:
    cam, _ = _cam_and_mask()
    big_mask = np.zeros((40, 40), bool)
    big_mask[:, 10:30] = True  # the same ROI at 10x resolution
    assert roi_iou(cam, big_mask) == pytest.approx(4 / 12)


def test_perfect_overlap_scores_one() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    cam = mask.astype(np.float32)
    assert roi_iou(cam, mask) == 1.0
    assert roi_dice(cam, mask) == 1.0
    assert pointing_game(cam, mask)
    assert energy_in_roi(cam, mask) == 1.0


def test_constant_cam_normalises_to_zero_and_scores_zero() -> None:
    cam = np.full((6, 6), 3.0)
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    assert not normalize_cam(cam).any()
    assert roi_iou(cam, mask) == 0.0
    assert roi_dice(cam, mask) == 0.0
    assert pointing_game(cam, mask) is False


def test_constant_cam_energy_is_roi_area_share() -> None:
    cam = np.ones((10, 10))
    mask = np.zeros((10, 10), bool)
    mask[:5, :2] = True
    assert energy_in_roi(cam, mask) == pytest.approx(0.1)


def test_empty_mask_and_empty_cam_agree_perfectly() -> None:
    cam = np.zeros((5, 5))
    mask = np.zeros((5, 5), bool)
    assert roi_iou(cam, mask) == 1.0
    assert roi_dice(cam, mask) == 1.0
    assert pointing_game(cam, mask) is False
    assert energy_in_roi(cam, mask) == 0.0


def test_empty_mask_with_nonempty_cam_scores_zero() -> None:
    cam = np.zeros((5, 5))
    cam[2, 2] = 1.0
    mask = np.zeros((5, 5), bool)
    assert roi_iou(cam, mask) == 0.0
    assert roi_dice(cam, mask) == 0.0


def test_pointing_game_hit_and_miss() -> None:
    cam = np.zeros((5, 5))
    cam[1, 1] = 1.0
    mask = np.zeros((5, 5), bool)
    mask[0:2, 0:2] = True
    assert pointing_game(cam, mask) is True
    cam[1, 1], cam[4, 4] = 0.0, 1.0
    assert pointing_game(cam, mask) is False


def test_energy_in_roi_hand_computed() -> None:
    cam = np.array([[1.0, 3.0], [0.0, -5.0]])  # negatives clipped: total mass 4
    mask = np.array([[False, True], [True, True]])
    assert energy_in_roi(cam, mask) == pytest.approx(0.75)


def test_roi_scores_bundles_all_four() -> None:
    cam, mask = _cam_and_mask()
    scores = roi_scores(cam, mask)
    assert set(scores) == {"iou", "dice", "pointing", "energy"}
    assert scores["iou"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("cam", [np.zeros((4, 4)), np.full((4, 4), 0.7), np.full((4, 4), np.nan)])
def test_a_constant_cam_is_empty(cam: np.ndarray) -> None:
    assert cam_is_empty(cam)


def test_a_cam_with_a_peak_is_not_empty() -> None:
    cam, _ = _cam_and_mask()
    assert not cam_is_empty(cam)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_threshold_out_of_range_is_rejected(threshold: float) -> None:
    cam, mask = _cam_and_mask()
    with pytest.raises(InvalidInputError, match="threshold"):
        roi_iou(cam, mask, threshold)


def test_non_2d_cam_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="2-D"):
        roi_iou(np.zeros((2, 3, 4)), np.zeros((3, 4), bool))
