"""How well a class-activation map agrees with a reader's region of interest.

Seed 004 (HMC-Net) scores Grad-CAM, Grad-CAM++ and Score-CAM against the MIAS ROI
circles with one protocol, reproduced here so the numbers are comparable:

1. the CAM is min–max normalised to [0, 1] (a constant CAM carries no localisation
   evidence and normalises to all zeros);
2. it is binarised at ``threshold`` (``cam >= threshold``);
3. the ROI mask is resized to the CAM's size (nearest neighbour, so it stays binary);
4. IoU = |CAM ∩ ROI| / |CAM ∪ ROI|, Dice = 2 |CAM ∩ ROI| / (|CAM| + |ROI|).

Edge cases are defined rather than left to 0/0:

* empty ROI and empty binarised CAM → IoU = Dice = 1.0 (both say "nothing here";
  the convention MONAI uses when prediction and ground truth are both empty);
* empty ROI and a non-empty binarised CAM → IoU = Dice = 0.0;
* constant CAM → normalised to zeros → an empty binarised CAM (so 0.0 against any ROI);
* pointing game: False for a constant CAM (no peak to point with) or an empty ROI;
* energy-in-ROI: share of the CAM's (non-negative) mass inside the ROI; 0.0 when the
  CAM has no mass or the ROI is empty.
"""

from __future__ import annotations

import cv2
import numpy as np

from napari_pathreview.errors import InvalidInputError

__all__ = [
    "binarize_cam",
    "cam_is_empty",
    "energy_in_roi",
    "normalize_cam",
    "pointing_game",
    "resize_mask",
    "roi_dice",
    "roi_iou",
    "roi_scores",
]


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    """A 2-D float view of ``array``, or a clear error naming ``what`` was wrong."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInputError(f"{what} must be a non-empty 2-D array, got shape {arr.shape}")
    return arr


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0 or not np.isfinite(threshold):
        raise InvalidInputError(f"threshold must lie in [0, 1], got {threshold}")
    return float(threshold)


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """Min–max normalise a CAM to [0, 1] as seed 004 does; a constant CAM becomes zeros.

    NaNs (a diverged CAM) are treated as zero evidence rather than propagated.
    """
    arr = _finite(cam)
    if _is_constant(arr):
        return np.zeros_like(arr)
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo)


def _finite(cam: np.ndarray) -> np.ndarray:
    return np.nan_to_num(_as_2d(cam, "cam").astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _is_constant(arr: np.ndarray) -> bool:
    lo, hi = float(arr.min()), float(arr.max())
    return hi - lo <= 1e-12 * max(1.0, abs(hi))


def cam_is_empty(cam: np.ndarray) -> bool:
    """Whether the CAM is constant (all zeros, all NaN, or flat): it localises nothing.

    Such a CAM scores IoU = Dice = 0 against any ROI, which reads like a miss; callers report
    it so a user can tell "the method gave no map" from "the map missed the lesion".
    """
    return _is_constant(_finite(cam))


def binarize_cam(cam: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The normalised CAM's pixels at or above ``threshold`` (the "explained" region)."""
    return normalize_cam(cam) >= _check_threshold(threshold)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean ROI mask resized to ``shape`` (rows, cols) by nearest neighbour."""
    arr = _as_2d(mask, "mask")
    arr = arr > 0 if arr.dtype != bool else arr
    if arr.shape == tuple(shape):
        return arr
    resized = cv2.resize(
        arr.astype(np.uint8), (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_NEAREST
    )
    return resized.astype(bool)


def _binary_pair(cam: np.ndarray, mask: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    binary = binarize_cam(cam, threshold)
    return binary, resize_mask(mask, binary.shape)


def roi_iou(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of the binarised CAM and the ROI mask (seed 004's metric).

    Args:
        cam: 2-D class-activation map, any range (it is min–max normalised first).
        mask: 2-D ROI mask (bool or labels; > 0 is inside), any size (resized to the CAM's).
        threshold: binarisation threshold on the normalised CAM, in [0, 1].

    Returns:
        IoU in [0, 1]; see the module docstring for the empty and constant cases.
    """
    binary, roi = _binary_pair(cam, mask, threshold)
    union = np.count_nonzero(binary | roi)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(binary & roi) / union)


def roi_dice(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """Dice coefficient of the binarised CAM and the ROI mask (same protocol as :func:`roi_iou`)."""
    binary, roi = _binary_pair(cam, mask, threshold)
    total = np.count_nonzero(binary) + np.count_nonzero(roi)
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(binary & roi) / total)


def pointing_game(cam: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the CAM's maximum falls inside the ROI (a hit in the pointing game).

    Ties at the maximum count as a hit only if every tied pixel is inside the ROI, so
    a flat CAM cannot score by luck; a constant CAM or an empty ROI is a miss.
    """
    arr = normalize_cam(cam)
    roi = resize_mask(mask, arr.shape)
    if not roi.any() or not arr.any():
        return False
    peak = arr >= arr.max()
    return bool(np.all(roi[peak]))


def energy_in_roi(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the CAM's energy (its non-negative mass) that lies inside the ROI.

    Unlike IoU this needs no threshold, so it also ranks diffuse CAMs. The CAM is
    clipped at zero (not min–max normalised) so a uniform CAM scores the ROI's area share.
    """
    arr = np.clip(
        np.nan_to_num(_as_2d(cam, "cam").astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0),
        0.0,
        None,
    )
    roi = resize_mask(mask, arr.shape)
    total = float(arr.sum())
    if total <= 0.0 or not roi.any():
        return 0.0
    return float(arr[roi].sum() / total)


def roi_scores(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """All four scores at once: ``iou``, ``dice``, ``pointing`` (0/1) and ``energy``."""
    return {
        "iou": roi_iou(cam, mask, threshold),
        "dice": roi_dice(cam, mask, threshold),
        "pointing": float(pointing_game(cam, mask)),
        "energy": energy_in_roi(cam, mask),
    }
