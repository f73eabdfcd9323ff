"""CAMs (through pytorch-grad-cam) and how well they agree with readers' ROIs.

The ROI metrics and masks are plain numpy and the method names (``CAM_METHOD_NAMES``,
``resolve_method``) torch-free; the CAM machinery (which imports torch and pytorch-grad-cam)
resolves lazily on first use.
"""

from __future__ import annotations

from napari_pathreview._lazy import lazy_attributes
from napari_pathreview.explain.masks import mask_from_labels, mask_from_mias, mask_from_shapes
from napari_pathreview.explain.methods import CAM_METHOD_NAMES, resolve_method
from napari_pathreview.explain.metrics import (
    energy_in_roi,
    normalize_cam,
    pointing_game,
    roi_dice,
    roi_iou,
    roi_scores,
)

_LAZY: dict[str, str] = {
    "CAM_METHODS": "napari_pathreview.explain.cams",
    "BatchedScoreCAM": "napari_pathreview.explain.cams",
    "CamResult": "napari_pathreview.explain.cams",
    "compute_cam": "napari_pathreview.explain.cams",
}

__all__ = [
    "CAM_METHODS",
    "CAM_METHOD_NAMES",
    "BatchedScoreCAM",
    "CamResult",
    "compute_cam",
    "energy_in_roi",
    "mask_from_labels",
    "mask_from_mias",
    "mask_from_shapes",
    "normalize_cam",
    "pointing_game",
    "resolve_method",
    "roi_dice",
    "roi_iou",
    "roi_scores",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
