"""The model zoo: seed architectures on timm backbones, any timm classifier, one contract.

Names resolve lazily (PEP 562) so ``import napari_pathreview.models.cli`` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "create_model": "napari_pathreview.models.factory",
    "list_architectures": "napari_pathreview.models.factory",
    "is_architecture": "napari_pathreview.models.factory",
    "register_model": "napari_pathreview.models.factory",
    "PathReviewModel": "napari_pathreview.models.base",
    "ModelSpec": "napari_pathreview.models.base",
    "TokenReshape": "napari_pathreview.models.base",
    "TimmClassifier": "napari_pathreview.models.timm_classifier",
    "PRETRAINED_DIR_ENV": "napari_pathreview.models.pretrained",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_pathreview.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
