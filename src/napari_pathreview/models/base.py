"""The contract every model in the zoo honours, so training, inference and CAMs need no cases.

timm's lesson: one small interface (``forward_features`` → ``forward_head``, ``reset_classifier``)
that every architecture implements, checked by one parametrised test. We add what a pathology
review tool needs on top: where to hook CAMs, how to reshape ViT tokens for them, the input
specification (size, normalisation, modality) and ordered parameter groups for staged fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.modality import MODALITIES
from napari_pathreview.preprocessing import IMAGENET_MEAN, IMAGENET_STD

ParameterGroups = list[tuple[str, list[nn.Parameter]]]


@dataclass(frozen=True)
class ModelSpec:
    """What a caller must know to feed a model: input geometry, normalisation and intended modality.

    Attributes:
        architecture: Name the factory builds this model from.
        input_size: (channels, height, width) the model was designed for.
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel standard deviation divided by after the mean.
        modality_hint: "histology" or "mammogram": which images the design targets.
        num_classes: Width of the logits.
    """

    architecture: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    modality_hint: str = "histology"
    num_classes: int = 2

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) <= 0 for v in self.input_size):
            raise InvalidInputError(f"input_size must be (C, H, W) > 0, got {self.input_size}")
        if len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise InvalidInputError("mean and std need one value per input channel")
        if any(s <= 0 for s in self.std):
            raise InvalidInputError(f"std must be positive, got {self.std}")
        if self.modality_hint not in MODALITIES:
            raise InvalidInputError(f"modality_hint must be one of {MODALITIES}")


class TokenReshape:
    """Turns transformer activations into CAM-ready maps (B, C, h, w).

    pytorch-grad-cam calls this on the hooked activations and gradients of every target layer.
    Token sequences (B, N, C) lose their prefix tokens ([CLS], registers: no spatial position)
    and are folded onto the patch grid; 4-D maps pass through (NCHW) or are permuted (NHWC), so
    one transform also serves a hybrid whose targets are a CNN map and ViT tokens. A class
    rather than a closure so models stay picklable for DataLoader workers and spawned processes.
    """

    def __init__(
        self, num_prefix_tokens: int, grid_size: tuple[int, int], spatial_format: str = "NCHW"
    ) -> None:
        if spatial_format not in ("NCHW", "NHWC"):
            raise InvalidInputError(f"spatial_format must be NCHW or NHWC, got {spatial_format}")
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.spatial_format = spatial_format

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim == 4:
            return tokens.permute(0, 3, 1, 2) if self.spatial_format == "NHWC" else tokens
        patches = tokens[:, self.num_prefix_tokens :, :]
        batch, count, channels = patches.shape
        height, width = self.grid_size
        if height * width != count:  # another input size: assume a square grid
            height = width = int(round(count**0.5))
        return patches.reshape(batch, height, width, channels).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return (
            f"TokenReshape(prefix={self.num_prefix_tokens}, grid={self.grid_size}, "
            f"4d={self.spatial_format})"
        )


class PathReviewModel(nn.Module):
    """Base of every model the factory returns.

    Subclasses implement ``forward_features``, ``forward_head``, ``reset_classifier``,
    ``get_classifier``, ``cam_target_layers`` and ``_parameter_group_modules``; this class
    owns ``forward`` and the bookkeeping that keeps parameter groups complete and disjoint.
    """

    spec: ModelSpec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: features then head, so hooks on either half see the same tensors as training."""
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def get_classifier(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def cam_target_layers(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def cam_reshape_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """None for convolutional maps; a TokenReshape for transformer tokens."""
        return None

    def cam_target_layer_names(self) -> tuple[str, ...]:
        """Module paths of ``cam_target_layers()``, as stored in model cards."""
        return tuple(module_path(self, layer) for layer in self.cam_target_layers())

    def _parameter_group_modules(self) -> list[tuple[str, Sequence[nn.Module | nn.Parameter]]]:
        raise NotImplementedError  # pragma: no cover - abstract

    def parameter_groups(self) -> ParameterGroups:
        """Named parameter groups, earliest layers first and "head" last.

        Training freezes, unfreezes and assigns learning rates by these groups, so every
        parameter is in exactly one of them (checked here, not left to luck).
        """
        groups: ParameterGroups = []
        for name, members in self._parameter_group_modules():
            params = list(_unique_params(members))
            if params:
                groups.append((name, params))
        check_parameter_groups(self, groups)
        return groups

    def _set_num_classes(self, num_classes: int) -> None:
        self.spec = _replace_spec(self.spec, num_classes=num_classes)


def _replace_spec(spec: ModelSpec, **changes: object) -> ModelSpec:
    return replace(spec, **changes)


def _unique_params(members: Iterable[nn.Module | nn.Parameter]) -> Iterable[nn.Parameter]:
    seen: set[int] = set()
    for member in members:
        params = [member] if isinstance(member, nn.Parameter) else member.parameters()
        for param in params:
            if id(param) not in seen:
                seen.add(id(param))
                yield param


def check_parameter_groups(model: nn.Module, groups: ParameterGroups) -> None:
    """Raise if a parameter is missing from the groups, repeated, or "head" is not last.

    A silent gap would leave weights frozen (or at the wrong learning rate) without anyone noticing.
    """
    names = [name for name, _ in groups]
    if not groups or names[-1] != "head":
        raise RuntimeError(f"parameter groups must end with 'head', got {names}")
    if len(set(names)) != len(names):
        raise RuntimeError(f"parameter group names repeat: {names}")
    seen: dict[int, str] = {}
    for name, params in groups:
        for param in params:
            if id(param) in seen:
                raise RuntimeError(f"a parameter is in both {seen[id(param)]!r} and {name!r}")
            seen[id(param)] = name
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise RuntimeError(f"parameters in no group: {missing[:5]}")


def module_path(root: nn.Module, target: nn.Module) -> str:
    """Dotted path of ``target`` inside ``root`` (as ``root.get_submodule`` accepts)."""
    for name, module in root.named_modules():
        if module is target:
            return name
    raise LookupError(f"{type(target).__name__} is not a submodule of {type(root).__name__}")
