"""Phased fine-tuning: which parameter groups train in a phase, and at which learning rate.

Seed 000 trains the head on a frozen backbone, then everything with layer-wise learning
rates; seed 001 adds a middle phase that unfreezes the last stages. Both are expressed
through the model's ``parameter_groups()`` (earliest first, "head" last), so the same
recipe keys work for every architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from napari_pathreview.training.recipe import PhaseConfig, RecipeError


def model_groups(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The model's named parameter groups; plain timm models get (body, head)."""
    inner = getattr(model, "module", model)  # DDP wrapper
    if hasattr(inner, "parameter_groups"):
        return inner.parameter_groups()
    head = list(inner.get_classifier().parameters())
    head_ids = {id(p) for p in head}
    return [("body", [p for p in inner.parameters() if id(p) not in head_ids]), ("head", head)]


def select_groups(names: Sequence[str], selectors: Sequence[str]) -> list[str]:
    """Resolve phase selectors ("all", "head", "last:N", or group names) to group names.

    Raises:
        RecipeError: a selector names no group (the message lists the model's groups).
    """
    chosen: list[str] = []
    for selector in selectors:
        selector = str(selector)
        if selector == "all":
            picked = list(names)
        elif selector.startswith("last:"):
            count = int(selector.split(":", 1)[1])
            picked = list(names[-count:])
        elif selector in names:
            picked = [selector]
        else:
            raise RecipeError(
                f"phase selector {selector!r} matches no parameter group; the model has "
                f"{', '.join(names)} (or use all, head, last:N)"
            )
        chosen += [n for n in picked if n not in chosen]
    return [n for n in names if n in chosen]


def configure_phase(
    model: nn.Module, phase: PhaseConfig, base_lr: float, weight_decay: float
) -> list[dict]:
    """Freeze the groups the phase does not train and return optimiser parameter groups.

    Learning rate of group i = phase lr × layer_decay^(number of trainable groups after i),
    so the head gets the full rate and earlier layers progressively less (seed 000's
    layer-wise learning rates).
    """
    groups = model_groups(model)
    names = [name for name, _ in groups]
    trainable = select_groups(names, phase.train)
    lr = phase.lr if phase.lr is not None else base_lr
    param_groups = []
    for name, params in groups:
        train = name in trainable
        for param in params:
            param.requires_grad_(train)
        if train:
            distance = len(trainable) - 1 - trainable.index(name)
            param_groups.append(
                {
                    "params": params,
                    "lr": lr * phase.layer_decay**distance,
                    "weight_decay": weight_decay,
                    "name": name,
                }
            )
    return param_groups


def build_optimizer(name: str, param_groups: list[dict], lr: float, momentum: float):
    """AdamW / Adam / SGD over the phase's parameter groups (timm's optimizer factory would
    flatten our per-group learning rates, so torch's classes are used directly)."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    raise RecipeError(f"unknown optimizer {name!r}")


def phase_at(phases: Sequence[PhaseConfig], epoch: int) -> tuple[int, int]:
    """(phase index, epoch within the phase) of a global epoch number."""
    start = 0
    for index, phase in enumerate(phases):
        if epoch < start + phase.epochs:
            return index, epoch - start
        start += phase.epochs
    raise IndexError(f"epoch {epoch} is past the last phase")
