"""The name → builder table of this package's architectures, and nothing else (timm-style).

Architecture modules import only this module to register themselves; ``factory`` imports the
architecture modules and builds. Keeping the table apart is what lets an architecture module
reuse ``timm_classifier`` helpers without the factory and the models importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

_BUILDERS: dict[str, Callable[..., object]] = {}
_BACKBONES: dict[str, Callable[..., tuple[str, ...]]] = {}


def register_model(name: str, *, backbones: Callable[..., tuple[str, ...]]) -> Callable[[F], F]:
    """Register ``builder(num_classes, pretrained=False, pretrained_path=None, **kw)`` as ``name``.

    Args:
        name: The architecture's name in ``create_model``.
        backbones: ``backbones(**kw)`` gives the timm names whose weights ``pretrained=True``
            loads for those architecture kwargs, so they can be looked up before anything
            is built (``require_pretrained``); ``()`` for none.

    Raises:
        ValueError: the name is taken (two architectures silently shadowing each other is a bug).
    """

    def decorate(builder: F) -> F:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"architecture {name!r} is registered twice")
        _BUILDERS[name] = builder
        _BACKBONES[name] = backbones
        return builder

    return decorate


def registered_names() -> list[str]:
    """Names registered so far, sorted (only those whose modules were imported)."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable[..., object] | None:
    """The builder registered as ``name``, or None."""
    return _BUILDERS.get(name)


def get_backbones(name: str) -> Callable[..., tuple[str, ...]] | None:
    """The backbones declaration registered with ``name``, or None."""
    return _BACKBONES.get(name)


def builder_summary(name: str) -> str:
    """First line of the builder's docstring: the one-line description ``models list`` shows."""
    doc = (_BUILDERS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
