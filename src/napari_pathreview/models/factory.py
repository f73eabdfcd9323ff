"""One factory over an explicit registry of architectures (timm's ``create_model`` pattern).

Architecture modules decorate their builders with ``@register_model`` (from ``_registry``, which
holds only the name → builder table); the modules themselves are imported once, in
``_ensure_registered`` — the single place registration is listed. No ``import *`` side effects,
and importing the package (e.g. for the CLI's ``--help``) does not pull in torch.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from napari_pathreview.errors import InvalidInputError, ModelNotFoundError, WeightsError
from napari_pathreview.models._registry import (
    builder_summary,
    get_backbones,
    get_builder,
    register_model,
    registered_names,
)

__all__ = [
    "create_model",
    "describe_architectures",
    "is_architecture",
    "list_architectures",
    "pretrained_backbones",
    "register_model",
    "require_architecture",
    "require_pretrained",
]

_loaded = False


def _ensure_registered() -> None:
    """Import every module that registers architectures (deferred: they import torch and timm)."""
    global _loaded
    if _loaded:
        return
    from napari_pathreview.models import (  # noqa: F401  (imported to register)
        cspresnet_fpn_se,  # cspresnet50_fpn_se (seed 000)
        hmc_resnet,  # hmc_resnet50 (seed 004)
        hybrid_effnet_vit,  # hybrid_effnetv2s_vitb16 (seed 001)
        mil,  # patch_mil: patch encoder + MIL pooling (issue 14)
        ssresnext,  # ssresnext50 (seed 002)
        timm_classifier,  # resnet50 (seed 003) and any timm classifier
    )

    _loaded = True


def list_architectures() -> list[str]:
    """Names registered by this package (any timm classifier name also works in create_model)."""
    _ensure_registered()
    return registered_names()


def describe_architectures() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered architecture, sorted by name."""
    return [(name, builder_summary(name)) for name in list_architectures()]


def is_architecture(name: str) -> bool:
    """Whether ``create_model(name, ...)`` can build ``name`` (registered here or known to timm)."""
    import timm

    _ensure_registered()
    return get_builder(name) is not None or timm.is_model(name)


def require_architecture(name: str) -> None:
    """Refuse a name ``create_model`` cannot build, suggesting close ones.

    Training calls it before it creates a run folder or decodes an image, so a misspelt
    ``model.architecture`` costs a second, not the data preparation.

    Raises:
        ModelNotFoundError: ``name`` is neither registered here nor a timm model.
    """
    if is_architecture(name):
        return
    import timm

    known = dict.fromkeys(registered_names() + timm.list_models())  # ours shadow timm's
    close = difflib.get_close_matches(name, list(known), n=4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"unknown architecture {name!r}{hint} (see `pathreview models list --architectures` "
        "or timm.list_models())"
    )


def pretrained_backbones(name: str, **kwargs: object) -> tuple[str, ...]:
    """The timm names whose weights ``create_model(name, pretrained=True, **kwargs)`` loads.

    A timm classifier is its own backbone; a registered architecture declares its own
    (``register_model(..., backbones=)``: both of the hybrid's, the MIL encoder chosen by
    ``encoder=``, the SE-ResNeXt that SSResNeXt starts from, ...).
    """
    require_architecture(name)
    declared = get_backbones(name)
    return (name,) if declared is None else tuple(declared(**kwargs))


def require_pretrained(
    name: str, pretrained_path: str | Path | None = None, **kwargs: object
) -> None:
    """Refuse, in seconds and before anything is built, weights that cannot be found.

    Every backbone is looked up as loading will look it up (``locate_weights``: a local
    safetensors file, else timm's hub cache, else one short request to the hub).

    Raises:
        WeightsError: a backbone's weights are nowhere; names every such backbone, the places
            looked in and what to do.
    """
    from napari_pathreview.models.pretrained import locate_weights

    refusals: list[tuple[str, WeightsError]] = []
    for backbone in pretrained_backbones(name, **kwargs):
        try:
            locate_weights(backbone, pretrained_path)
        except WeightsError as error:
            refusals.append((backbone, error))
    if not refusals:
        return
    missing, first = ", ".join(b for b, _ in refusals), refusals[0][1]
    if [b for b, _ in refusals] == [name]:
        raise first
    raise WeightsError(f"{name} needs pretrained weights for {missing}: {first}") from first


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
    if int(num_classes) < 1:
        raise InvalidInputError(f"num_classes must be >= 1, got {num_classes}")
    require_architecture(name)
    if pretrained or pretrained_path is not None:  # all backbones found before one is built
        require_pretrained(name, pretrained_path, **kwargs)
    builder = get_builder(name)
    if builder is None:
        from napari_pathreview.models.timm_classifier import TimmClassifier

        builder = TimmClassifier.builder(name)
    model = builder(
        int(num_classes), pretrained=pretrained, pretrained_path=pretrained_path, **kwargs
    )
    model.architecture_kwargs = dict(kwargs)  # what the registry stores to rebuild it
    return model
