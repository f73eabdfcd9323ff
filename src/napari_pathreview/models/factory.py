"""One factory over an explicit registry of architectures (timm's ``create_model`` pattern).

Architecture modules decorate their builders with ``@register_model``; the modules themselves are
listed once, in ``ARCHITECTURE_MODULES``, and imported on first use — no ``import *`` side effects,
and importing the package (e.g. for the CLI's ``--help``) does not pull in torch.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from napari_pathreview.errors import ModelNotFoundError

#: Every module that registers architectures — the single place registration is listed.
ARCHITECTURE_MODULES: tuple[str, ...] = (
    "napari_pathreview.models.timm_classifier",  # resnet50 (seed 003) and any timm classifier
    "napari_pathreview.models.cspresnet_fpn_se",  # cspresnet50_fpn_se (seed 000)
    "napari_pathreview.models.hybrid_effnet_vit",  # hybrid_effnetv2s_vitb16 (seed 001)
    "napari_pathreview.models.ssresnext",  # ssresnext50 (seed 002)
    "napari_pathreview.models.hmc_resnet",  # hmc_resnet50 (seed 004)
)

F = TypeVar("F", bound=Callable[..., object])

_BUILDERS: dict[str, Callable[..., object]] = {}
_loaded = False


def register_model(name: str) -> Callable[[F], F]:
    """Register ``builder(num_classes, pretrained=False, pretrained_path=None, **kw)`` as ``name``.

    Raises:
        ValueError: the name is taken (two architectures silently shadowing each other is a bug).
    """

    def decorate(builder: F) -> F:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"architecture {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def _ensure_registered() -> None:
    global _loaded
    if not _loaded:
        for module in ARCHITECTURE_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_architectures() -> list[str]:
    """Names registered by this package (any timm classifier name also works in create_model)."""
    _ensure_registered()
    return sorted(_BUILDERS)


def is_architecture(name: str) -> bool:
    """Whether ``create_model(name, ...)`` can build ``name`` (registered here or known to timm)."""
    import timm

    _ensure_registered()
    return name in _BUILDERS or timm.is_model(name)


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    pretrained_path: str | Path | None = None,
    **kwargs: object,
):
    """Build an architecture with a ``num_classes`` head, honouring the PathReviewModel contract.

    Args:
        name: A registered name (``list_architectures()``) or any timm classifier name.
        num_classes: Width of the logits.
        pretrained: Load ImageNet weights into the backbone(s): local file/folder first
            (``pretrained_path`` or ``$PATHREVIEW_PRETRAINED_DIR``), else timm's hub.
        pretrained_path: A .safetensors file or a folder of them; implies ``pretrained``.
        **kwargs: Architecture options (e.g. ``drop_rate``), stored in model cards as
            ``architecture_kwargs`` so the registry can rebuild the model.

    Raises:
        ModelNotFoundError: unknown name (the message suggests close ones).
        WeightsError: pretrained weights were asked for but cannot be had.
    """
    from napari_pathreview.errors import InvalidInputError

    if int(num_classes) < 1:
        raise InvalidInputError(f"num_classes must be >= 1, got {num_classes}")
    _ensure_registered()
    builder = _BUILDERS.get(name)
    if builder is None:
        import timm

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, list(_BUILDERS) + timm.list_models(), n=4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelNotFoundError(
                f"unknown architecture {name!r}{hint} (see `pathreview models list "
                "--architectures` "
                "or timm.list_models())"
            )
        from napari_pathreview.models.timm_classifier import TimmClassifier

        builder = TimmClassifier.builder(name)
    model = builder(
        int(num_classes), pretrained=pretrained, pretrained_path=pretrained_path, **kwargs
    )
    model.architecture_kwargs = dict(kwargs)  # what the registry stores to rebuild it
    return model
