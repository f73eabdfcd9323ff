"""The model zoo: seed architectures on timm backbones, any timm classifier, one contract.

Names resolve lazily (PEP 562) so ``import napari_pathreview.models.cli`` stays torch-free.
"""

from __future__ import annotations

from napari_pathreview._lazy import lazy_attributes

_EXPORTS: dict[str, str] = {
    "create_model": "napari_pathreview.models.factory",
    "list_architectures": "napari_pathreview.models.factory",
    "is_architecture": "napari_pathreview.models.factory",
    "require_architecture": "napari_pathreview.models.factory",
    "require_pretrained": "napari_pathreview.models.factory",
    "pretrained_backbones": "napari_pathreview.models.factory",
    "register_model": "napari_pathreview.models._registry",
    "PathReviewModel": "napari_pathreview.models.base",
    "ModelSpec": "napari_pathreview.models.base",
    "TokenReshape": "napari_pathreview.models.base",
    "TimmClassifier": "napari_pathreview.models.timm_classifier",
    "PRETRAINED_DIR_ENV": "napari_pathreview.models.pretrained",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, __all__)
