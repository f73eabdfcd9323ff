"""Losses: CE matches torch, focal with gamma 0 is CE, soft targets and sample weights work."""

import pytest
import torch
import torch.nn.functional as F

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.training.losses import balanced_class_weights, build_loss, weighted_mean

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
TARGET = torch.tensor([0, 2, 1, 0])


def test_cross_entropy_with_smoothing_and_weights_matches_torch():
    weight = [1.0, 2.0, 0.5]
    loss = build_loss("ce", 3, label_smoothing=0.1, class_weights=weight)
    expected = F.cross_entropy(
        LOGITS, TARGET, weight=torch.tensor(weight), label_smoothing=0.1, reduction="none"
    )
    assert torch.allclose(loss(LOGITS, TARGET), expected)


def test_focal_with_gamma_zero_is_cross_entropy_and_downweights_easy_samples():
    ce = F.cross_entropy(LOGITS, TARGET, reduction="none")
    assert torch.allclose(build_loss("focal", 3, focal_gamma=0.0)(LOGITS, TARGET), ce, atol=1e-6)
    focal = build_loss("focal", 3, focal_gamma=2.0)(LOGITS, TARGET)
    assert torch.all(focal < ce)


def test_ce_dice_is_half_ce_half_dice_and_zero_dice_for_a_perfect_prediction():
    loss = build_loss("ce_dice", 3, dice_weight=0.5)
    perfect = torch.tensor([[50.0, -50.0, -50.0]])
    assert loss(perfect, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(LOGITS, TARGET).shape == (4,)


def test_soft_targets_from_mixup_are_accepted():
    soft = torch.tensor([[0.7, 0.3, 0.0]] * 4)
    for name in ("ce", "focal", "ce_dice"):
        assert build_loss(name, 3)(LOGITS, soft).shape == (4,)


def test_weighted_mean_scales_by_sample_weights():
    losses = torch.tensor([1.0, 3.0])
    assert weighted_mean(losses, None).item() == pytest.approx(2.0)
    assert weighted_mean(losses, torch.tensor([3.0, 1.0])).item() == pytest.approx(1.5)


def test_balanced_weights_follow_sklearn_and_bad_names_raise():
    assert balanced_class_weights([0, 0, 0, 1], 2) == pytest.approx([4 / 6, 2.0])
    with pytest.raises(InvalidInputError, match="unknown loss"):
        build_loss("hinge", 2)
    with pytest.raises(InvalidInputError, match="3 classes"):
        build_loss("ce", 3, class_weights=[1.0, 2.0])
