"""Parameter counts of the seed architectures against the figures their papers give."""

from __future__ import annotations

import pytest

from napari_pathreview.models import create_model, list_architectures


def count(name: str, num_classes: int) -> int:
    return sum(p.numel() for p in create_model(name, num_classes).parameters())


def within(actual: int, expected: float, tolerance: float = 0.15) -> bool:
    return abs(actual - expected) <= tolerance * expected


def test_every_seed_architecture_is_registered() -> None:
    expected = {"cspresnet50_fpn_se", "hybrid_effnetv2s_vitb16", "ssresnext50", "hmc_resnet50"}
    assert expected | {"resnet50"} <= set(list_architectures())


@pytest.mark.slow
def test_ssresnext50_matches_the_papers_25_1_million() -> None:
    """Seed 002, table 4: 2.51E+07 with its 8-class head. Ours: 26.47 M (+5.5 %)."""
    assert within(count("ssresnext50", 8), 25.1e6)


@pytest.mark.slow
def test_hmc_resnet50_matches_the_papers_45_million() -> None:
    """Seed 004, table 2: 45 M. Ours: 38.68 M (-14.0 %); the paper's equations alone give 33.1 M,
    the attention output projections (see hmc_resnet.py) account for the rest we can justify."""
    assert within(count("hmc_resnet50", 3), 45e6)


@pytest.mark.slow
def test_resnet50_matches_seed_004s_23_million() -> None:
    """Seed 003 gives no count; seed 004's table 2 lists ResNet50 at 23 M. Ours: 23.51 M."""
    assert within(count("resnet50", 2), 23e6)


@pytest.mark.slow
def test_hybrid_exceeds_the_papers_100_million() -> None:
    """Seed 001 says "over 100 million" parameters. Ours: 109.66 M (EffNetV2-S 20.18 M +
    ViT-B/16 85.80 M + fusion 3.15 M + head 0.53 M), so within 15 % above 100 M."""
    total = count("hybrid_effnetv2s_vitb16", 2)
    assert 100e6 < total <= 115e6


@pytest.mark.slow
def test_cspresnet50_fpn_se_count() -> None:
    """Seed 000 gives no count. Ours: 25.11 M with 8 classes (cspresnet50 trunk 20.59 M + FPN/SE
    2.25 M + dense neck 2.27 M); the test guards that figure within 15 %."""
    assert within(count("cspresnet50_fpn_se", 8), 25.11e6)
