"""Any timm classifier behind the PathReviewModel contract; also registers ``resnet50`` (seed 003).

timm already provides forward_features / forward_head / reset_classifier; this wrapper adds the
input spec from timm's pretrained config, CAM targets (last feature stage; last block's norm for
ViTs, with a token reshape) and named parameter groups from timm's own ``group_matcher``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from napari_pathreview.models._registry import register_model
from napari_pathreview.models.base import ModelSpec, PathReviewModel, TokenReshape
from napari_pathreview.models.pretrained import create_timm


def timm_stage_groups(
    model: nn.Module, exclude: Sequence[nn.Parameter] = (), first_name: str = "stem"
) -> list[tuple[str, list[nn.Parameter]]]:
    """Coarse stage groups of a timm model (stem, layer1, ...), earliest first.

    Uses timm's ``group_matcher(coarse=True)`` so the grouping matches timm's layer-decay
    optimiser; parameters in ``exclude`` (the classifier) are left out. Group names are the
    common module prefix of their parameters ("layer3", "blocks.5"), the first being ``first_name``.
    """
    from timm.models import group_parameters

    excluded = {id(p) for p in exclude}
    params = dict(model.named_parameters())
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=True))
        ordered = [grouped[key] for key in sorted(grouped)]
    else:
        ordered = [list(params)]
    groups: list[tuple[str, list[nn.Parameter]]] = []
    used: set[str] = set()
    for names in ordered:
        kept = [n for n in names if id(params[n]) not in excluded]
        if not kept:
            continue
        name = first_name if not groups else _common_prefix(kept) or _joined_prefixes(kept)
        while name in used:
            name += "_"
        used.add(name)
        groups.append((name, [params[n] for n in kept]))
    return groups


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.split(".")[:-1] for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common[:2])


def _joined_prefixes(names: Sequence[str]) -> str:
    """A name like "blocks.11+norm" for a group spanning modules (a ViT's last block + norm)."""
    prefixes = dict.fromkeys(".".join(n.split(".")[:-1][:2]) or n for n in names)
    return "+".join(prefixes)


def timm_cam_layer(model: nn.Module) -> nn.Module:
    """The module a CAM should hook: the last feature stage (ViT: the last block's norm1)."""
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "patch_embed") and isinstance(blocks, nn.Sequential) and len(blocks):
        last = blocks[-1]
        return getattr(last, "norm1", last)
    info = getattr(model, "feature_info", None)
    if info:
        return model.get_submodule(info[-1]["module"])
    children = [m for m in model.children() if any(p.requires_grad for p in m.parameters())]
    return children[-2] if len(children) > 1 else children[-1]


def timm_reshape(model: nn.Module) -> TokenReshape | None:
    """A token→map transform for transformer models; None for convolutional ones."""
    if getattr(model, "output_fmt", "NCHW") == "NHWC":
        return TokenReshape(0, (0, 0), spatial_format="NHWC")
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if patch_embed is not None and grid is not None and hasattr(model, "blocks"):
        return TokenReshape(getattr(model, "num_prefix_tokens", 1), tuple(grid))
    return None


def timm_spec(model: nn.Module, architecture: str, modality_hint: str) -> ModelSpec:
    """Input size and normalisation from timm's pretrained config for ``model``."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    return ModelSpec(
        architecture=architecture,
        input_size=tuple(int(v) for v in config["input_size"]),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
        modality_hint=modality_hint,
        num_classes=int(model.num_classes),
    )


class TimmModelWrapper(PathReviewModel):
    """The PathReviewModel contract around a built timm model (``self.model``).

    Args:
        model: A timm classifier (anything with timm's forward_features/forward_head API).
        architecture: Factory name recorded in ``spec`` and model cards.
        modality_hint: "histology" or "mammogram".
    """

    def __init__(
        self, model: nn.Module, architecture: str, modality_hint: str = "histology"
    ) -> None:
        super().__init__()
        self.model = model
        self.spec = timm_spec(model, architecture, modality_hint)
        self._reshape = timm_reshape(model)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        self.model.reset_classifier(num_classes)
        self._set_num_classes(num_classes)

    def cam_target_layers(self) -> list[nn.Module]:
        return [timm_cam_layer(self.model)]

    @property
    def cam_reshape_transform(self) -> TokenReshape | None:
        return self._reshape

    def _parameter_group_modules(self) -> list[tuple[str, Sequence[nn.Module | nn.Parameter]]]:
        head = list(self.get_classifier().parameters())
        return [*timm_stage_groups(self.model, exclude=head), ("head", head)]


class TimmClassifier(TimmModelWrapper):
    """Any timm classifier by name, with the PathReviewModel contract.

    Args:
        timm_name: Any timm classifier name, optionally with a pretrained tag.
        num_classes: Width of the logits.
        pretrained: Load ImageNet weights (see ``create_timm``).
        pretrained_path: Local safetensors file or folder; implies ``pretrained``.
        modality_hint: "histology" (default) or "mammogram".
        **timm_kwargs: Passed to ``timm.create_model`` (``drop_rate``, ``drop_path_rate``, ...).
    """

    def __init__(
        self,
        timm_name: str,
        num_classes: int,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        modality_hint: str = "histology",
        **timm_kwargs: object,
    ) -> None:
        model = create_timm(
            timm_name,
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            num_classes=num_classes,
            **timm_kwargs,
        )
        super().__init__(model, timm_name, modality_hint)

    @staticmethod
    def builder(timm_name: str) -> Callable[..., TimmClassifier]:
        """A factory builder for ``timm_name`` (create_model's route for unregistered names)."""

        def build(num_classes: int, **kwargs: object) -> TimmClassifier:
            return TimmClassifier(timm_name, num_classes, **kwargs)

        return build


@register_model("resnet50", backbones=lambda **_: ("resnet50",))
def resnet50(num_classes: int, **kwargs: object) -> TimmClassifier:
    """Seed 003's ResNet50 (timm ``resnet50``, torchvision-compatible layout) with a new head."""
    return TimmClassifier("resnet50", num_classes, **kwargs)
