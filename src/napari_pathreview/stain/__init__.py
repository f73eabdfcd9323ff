"""Stain normalisation (Reinhard, Macenko, Vahadane, none) and image quality control.

``get_normalizer(name)`` builds any method from one table; ``normalizer_from_dict`` restores a
fitted one from its JSON state (as stored in model cards). QC names are re-exported from
:mod:`napari_pathreview.stain.qc`.
"""

from __future__ import annotations

from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.stain.base import NotFittedError, StainFitError, StainNormalizer
from napari_pathreview.stain.identity import IdentityNormalizer
from napari_pathreview.stain.macenko import MacenkoNormalizer
from napari_pathreview.stain.qc import QCConfig, QCResult, assess_quality, tissue_mask
from napari_pathreview.stain.reinhard import REINHARD_BREAKHIS_PRESET, ReinhardNormalizer
from napari_pathreview.stain.vahadane import VahadaneNormalizer

#: method name → class; the single place a method is registered
NORMALIZERS: dict[str, type[StainNormalizer]] = {
    "none": IdentityNormalizer,
    "reinhard": ReinhardNormalizer,
    "macenko": MacenkoNormalizer,
    "vahadane": VahadaneNormalizer,
}
STAIN_METHODS: tuple[str, ...] = tuple(NORMALIZERS)


def get_normalizer(name: str, **kwargs: Any) -> StainNormalizer:
    """A new (unfitted, unless kwargs give a target) normaliser for a method name.

    Raises:
        InvalidInputError: for an unknown name.
    """
    key = (name or "none").lower()
    if key not in NORMALIZERS:
        raise InvalidInputError(
            f"unknown stain method {name!r}; choose one of {', '.join(STAIN_METHODS)}"
        )
    return NORMALIZERS[key](**kwargs)


def normalizer_from_dict(state: dict[str, Any] | None) -> StainNormalizer:
    """A fitted normaliser from ``StainNormalizer.to_dict()`` output (None → "none")."""
    if state is None:
        return IdentityNormalizer()
    if not isinstance(state, dict) or "method" not in state:
        raise InvalidInputError("stain target must be a dict with a 'method' key")
    cls = NORMALIZERS.get(str(state["method"]).lower())
    if cls is None:
        raise InvalidInputError(f"unknown stain method {state['method']!r} in stain target")
    return cls.from_dict({**state, "method": cls.name})


__all__ = [
    "NORMALIZERS",
    "REINHARD_BREAKHIS_PRESET",
    "STAIN_METHODS",
    "IdentityNormalizer",
    "MacenkoNormalizer",
    "NotFittedError",
    "QCConfig",
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
