"""Stain normalisation (Reinhard, Macenko, Vahadane, none) and image quality control.

``get_normalizer(name)`` builds any method from one table (:mod:`.methods`);
``normalizer_from_dict`` restores a fitted one from its JSON state (as stored in model cards).
QC names are re-exported from :mod:`napari_pathreview.stain.qc`. Names resolve lazily (PEP 562),
so ``STAIN_METHODS`` can be read without importing OpenCV or a normaliser.
"""

from __future__ import annotations

from typing import Any

from napari_pathreview._lazy import lazy_attributes
from napari_pathreview.stain.methods import (
    STAIN_METHODS,
    get_normalizer,
    normalizer_from_dict,
    normalizers,
)

_LAZY: dict[str, str] = {
    "NotFittedError": "napari_pathreview.stain.base",
    "StainFitError": "napari_pathreview.stain.base",
    "StainNormalizer": "napari_pathreview.stain.base",
    "IdentityNormalizer": "napari_pathreview.stain.identity",
    "MacenkoNormalizer": "napari_pathreview.stain.macenko",
    "ReinhardNormalizer": "napari_pathreview.stain.reinhard",
    "REINHARD_BREAKHIS_PRESET": "napari_pathreview.stain.reinhard",
    "VahadaneNormalizer": "napari_pathreview.stain.vahadane",
    "QCConfig": "napari_pathreview.stain.qc_config",
    "QCConfigError": "napari_pathreview.stain.qc_config",
    "QCResult": "napari_pathreview.stain.qc",
    "assess_quality": "napari_pathreview.stain.qc",
    "tissue_mask": "napari_pathreview.stain.qc",
}

__all__ = [
    "NORMALIZERS",
    "REINHARD_BREAKHIS_PRESET",
    "STAIN_METHODS",
    "IdentityNormalizer",
    "MacenkoNormalizer",
    "NotFittedError",
    "QCConfig",
    "QCConfigError",
    "QCResult",
    "ReinhardNormalizer",
    "StainFitError",
    "StainNormalizer",
    "VahadaneNormalizer",
    "assess_quality",
    "get_normalizer",
    "normalizer_from_dict",
    "tissue_mask",
]


_lazy_getattr, __dir__ = lazy_attributes(__name__, _LAZY, __all__)


def __getattr__(name: str) -> Any:
    if name == "NORMALIZERS":  # method name → class; built from the one table in .methods
        return normalizers()
    return _lazy_getattr(name)
