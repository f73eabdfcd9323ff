"""Predictions from registered models: batching, devices, precision, tiling of large images.

Names resolve lazily (PEP 562) so ``import napari_pathreview.inference.cli`` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Predictor": "napari_pathreview.inference.predictor",
    "Prediction": "napari_pathreview.inference.predictor",
    "Progress": "napari_pathreview.inference.predictor",
    "TiledPrediction": "napari_pathreview.inference.tiling",
    "TiledCam": "napari_pathreview.inference.tiling",
    "predict_tiled": "napari_pathreview.inference.tiling",
    "explain_tiled": "napari_pathreview.inference.tiling",
    "resolve_device": "napari_pathreview.inference.device",
    "DeviceUnavailableError": "napari_pathreview.inference.device",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_pathreview.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
