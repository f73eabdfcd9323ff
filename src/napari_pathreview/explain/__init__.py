"""CAMs (through pytorch-grad-cam) and how well they agree with readers' ROIs.

The ROI metrics and masks are plain numpy; the CAM names (which import torch and
pytorch-grad-cam) resolve lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from napari_pathreview.explain.masks import mask_from_labels, mask_from_mias, mask_from_shapes
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
    "resolve_method": "napari_pathreview.explain.cams",
}

__all__ = [
    "CAM_METHODS",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_pathreview.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
