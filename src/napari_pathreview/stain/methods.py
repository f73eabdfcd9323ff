"""The stain-normalisation methods by name, and the one table binding each name to its class.

Light on purpose (no numpy, no OpenCV): model cards, recipes, CLI choices and widgets validate
and list methods from here without importing a normaliser; classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from napari_pathreview.errors import InvalidInputError

if TYPE_CHECKING:
    from napari_pathreview.stain.base import StainNormalizer

__all__ = [
    "STAIN_METHODS",
    "get_normalizer",
    "normalizer_class",
    "normalizer_from_dict",
    "normalizers",
]

#: method name → (module, class) of its normaliser: the single place a method is registered.
_NORMALIZER_CLASSES: dict[str, tuple[str, str]] = {
    "none": ("napari_pathreview.stain.identity", "IdentityNormalizer"),
    "reinhard": ("napari_pathreview.stain.reinhard", "ReinhardNormalizer"),
    "macenko": ("napari_pathreview.stain.macenko", "MacenkoNormalizer"),
    "vahadane": ("napari_pathreview.stain.vahadane", "VahadaneNormalizer"),
}
STAIN_METHODS: tuple[str, ...] = tuple(_NORMALIZER_CLASSES)


def normalizer_class(name: str | None) -> type[StainNormalizer]:
    """The normaliser class of a method name (case-insensitive; None/"" → "none").

    Raises:
        InvalidInputError: for an unknown name (the message lists the methods).
    """
    key = (name or "none").lower()
    if key not in _NORMALIZER_CLASSES:
        raise InvalidInputError(
            f"unknown stain method {name!r}; choose one of {', '.join(STAIN_METHODS)}"
        )
    module, cls = _NORMALIZER_CLASSES[key]
    return getattr(importlib.import_module(module), cls)


def normalizers() -> dict[str, type[StainNormalizer]]:
    """Every method name → its class (imports all normalisers)."""
    return {name: normalizer_class(name) for name in STAIN_METHODS}


def get_normalizer(name: str | None, **kwargs: Any) -> StainNormalizer:
    """A new (unfitted, unless kwargs give a target) normaliser for a method name.

    Raises:
        InvalidInputError: for an unknown name.
    """
    return normalizer_class(name)(**kwargs)


def normalizer_from_dict(state: dict[str, Any] | None) -> StainNormalizer:
    """A fitted normaliser from ``StainNormalizer.to_dict()`` output (None → "none")."""
    if state is None:
        return normalizer_class("none")()
    if not isinstance(state, dict) or "method" not in state:
        raise InvalidInputError("stain target must be a dict with a 'method' key")
    method = str(state["method"]).lower()
    if method not in _NORMALIZER_CLASSES:
        raise InvalidInputError(f"unknown stain method {state['method']!r} in stain target")
    cls = normalizer_class(method)
    return cls.from_dict({**state, "method": cls.name})
