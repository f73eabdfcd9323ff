"""Losses of the seed recipes, all accepting hard labels or soft (MixUp/CutMix) targets.

Each loss returns one value per sample so per-sample weights (review disagreements, see
``--from-reviews``) can be applied uniformly by :func:`weighted_mean`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_pathreview.errors import InvalidInputError

LOSSES: tuple[str, ...] = ("ce", "focal", "ce_dice")


def _soft_targets(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Class indices → smoothed one-hot; soft targets (from timm's Mixup) pass through unchanged."""
    if target.ndim == 2:
        return target.float()
    onehot = F.one_hot(target.long(), num_classes).float()
    return onehot * (1.0 - smoothing) + smoothing / num_classes


class CrossEntropy(nn.Module):
    """torch's cross-entropy with label smoothing and class weights, per-sample."""

    def __init__(
        self, num_classes: int, label_smoothing: float = 0.0, weight: torch.Tensor | None = None
    ):
        super().__init__()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        smoothing = self.label_smoothing if target.ndim == 1 else 0.0
        return F.cross_entropy(
            logits.float(),
            target if target.ndim == 1 else target.float(),
            weight=self.weight,
            label_smoothing=smoothing,
            reduction="none",
        )


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017) with label smoothing, as seed 000 uses.

    torchvision's ``sigmoid_focal_loss`` is one-vs-rest; the seed's is the multi-class softmax form.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
        weight: torch.Tensor | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        soft = _soft_targets(target, self.num_classes, self.label_smoothing)
        log_p = F.log_softmax(logits.float(), dim=1)
        modulation = (1.0 - log_p.exp()).pow(self.gamma)
        per_class = -soft * modulation * log_p
        if self.weight is not None:
            per_class = per_class * self.weight
        return per_class.sum(dim=1)


class CEDiceLoss(nn.Module):
    """Seed 002's 0.5 × cross-entropy + 0.5 × soft Dice loss over the softmax probabilities."""

    def __init__(
        self,
        num_classes: int,
        dice_weight: float = 0.5,
        label_smoothing: float = 0.0,
        weight: torch.Tensor | None = None,
        eps: float = 1.0,
    ):
        super().__init__()
        self.ce = CrossEntropy(num_classes, label_smoothing, weight)
        self.num_classes = num_classes
        self.dice_weight = dice_weight
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        soft = _soft_targets(target, self.num_classes, 0.0)
        probs = F.softmax(logits.float(), dim=1)
        intersection = (probs * soft).sum(dim=1)
        dice = 1.0 - (2.0 * intersection + self.eps) / (probs.sum(1) + soft.sum(1) + self.eps)
        return (1.0 - self.dice_weight) * self.ce(logits, target) + self.dice_weight * dice


def build_loss(
    name: str,
    num_classes: int,
    label_smoothing: float = 0.0,
    class_weights: Sequence[float] | None = None,
    focal_gamma: float = 2.0,
    dice_weight: float = 0.5,
) -> nn.Module:
    """The loss a recipe names (``LOSSES``); returns per-sample losses."""
    weight = None
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise InvalidInputError(
                f"class_weights has {len(class_weights)} entries for {num_classes} classes"
            )
        weight = torch.tensor(list(class_weights), dtype=torch.float32)
    if name == "ce":
        return CrossEntropy(num_classes, label_smoothing, weight)
    if name == "focal":
        return FocalLoss(num_classes, focal_gamma, label_smoothing, weight)
    if name == "ce_dice":
        return CEDiceLoss(num_classes, dice_weight, label_smoothing, weight)
    raise InvalidInputError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """scikit-learn's 'balanced' weights n / (k · count); absent classes get weight 1."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    present = np.unique(labels)
    computed = compute_class_weight("balanced", classes=present, y=labels)
    weights = [1.0] * num_classes
    for cls, value in zip(present, computed, strict=True):
        weights[int(cls)] = float(value)
    return weights


def weighted_mean(per_sample: torch.Tensor, sample_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-sample losses, weighted when weights are given (normalised by their sum)."""
    if sample_weight is None:
        return per_sample.mean()
    sample_weight = sample_weight.to(per_sample)
    return (per_sample * sample_weight).sum() / sample_weight.sum().clamp_min(1e-8)
