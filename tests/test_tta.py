"""Test-time augmentation: view sets, exact inverses, view-major stacking and merging."""

from __future__ import annotations

import pytest
import torch

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.tta import (
    TTA_MODES,
    augment_batch,
    deaugment_maps,
    get_views,
    merge_probabilities,
)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0))


def test_modes_have_1_4_and_8_distinct_views(batch):
    counts = {}
    for mode in TTA_MODES:
        outputs = {tuple(v.apply(batch).flatten().tolist()) for v in get_views(mode)}
        counts[mode] = len(outputs)
    assert counts == {"none": 1, "flips": 4, "d4": 8}


def test_flips_are_identity_hflip_vflip_and_both(batch):
    views = get_views("flips")
    expected = [batch, batch.flip(-1), batch.flip(-2), batch.flip(-2, -1)]
    assert all(torch.equal(v.apply(batch), e) for v, e in zip(views, expected, strict=True))


@pytest.mark.parametrize("view", get_views("d4"), ids=lambda v: v.name)
def test_every_view_inverts_exactly(view, batch):
    assert torch.equal(view.invert(view.apply(batch)), batch)
    assert torch.equal(view.apply(view.invert(batch)), batch)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_augment_is_view_major(mode, batch):
    out = augment_batch(batch, mode)
    views = get_views(mode)
    assert out.shape == (len(views) * 3, 2, 8, 8)
    for i, view in enumerate(views):
        assert torch.equal(out[i * 3 : (i + 1) * 3], view.apply(batch))


@pytest.mark.parametrize("mode", TTA_MODES)
def test_deaugment_maps_undoes_each_view(mode, batch):
    maps = deaugment_maps(augment_batch(batch, mode), mode)
    assert maps.shape == (len(get_views(mode)), *batch.shape)
    assert all(torch.equal(m, batch) for m in maps)


def test_flips_work_on_non_square_inputs():
    x = torch.randn(2, 3, 4, 6)
    assert torch.equal(deaugment_maps(augment_batch(x, "flips"), "flips")[3], x)


def test_d4_on_non_square_input_raises():
    with pytest.raises(InvalidInputError, match="square"):
        augment_batch(torch.zeros(1, 3, 4, 6), "d4")


@pytest.mark.parametrize("mode", TTA_MODES)
@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 1, 3, 8, 8)])
def test_augment_refuses_anything_but_a_four_dimensional_batch(mode, shape):
    with pytest.raises(InvalidInputError, match=r"N×C×H×W.*unsqueeze"):
        augment_batch(torch.zeros(shape), mode)


def _invariant_model(x: torch.Tensor) -> torch.Tensor:
    """Channel means and maxima → softmax: unchanged by any flip or quarter turn."""
    features = torch.cat([x.mean((-2, -1)), x.amax((-2, -1))], dim=1)
    return features.softmax(dim=1)


@pytest.mark.parametrize("how", ["mean", "gmean", "max"])
@pytest.mark.parametrize("mode", TTA_MODES)
def test_tta_of_invariant_function_equals_the_function(mode, how, batch):
    merged = merge_probabilities(_invariant_model(augment_batch(batch, mode)), mode, how=how)
    torch.testing.assert_close(merged, _invariant_model(batch))


def test_tta_changes_a_direction_sensitive_function(batch):
    weights = torch.linspace(-1, 1, 8)

    def model(x):
        return torch.stack([(x * weights).sum((1, 2, 3)), torch.zeros(x.shape[0])], 1).softmax(1)

    merged = merge_probabilities(model(augment_batch(batch, "flips")), "flips")
    assert not torch.allclose(merged, model(batch))


def test_merge_methods_on_known_values():
    p = torch.tensor([[0.8, 0.2], [0.2, 0.8]])  # two views of one image
    torch.testing.assert_close(
        merge_probabilities(p.repeat(2, 1)[[0, 2, 1, 3]], "none"), p.repeat(2, 1)[[0, 2, 1, 3]]
    )
    four = torch.tensor([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5], [0.5, 0.5]])
    torch.testing.assert_close(
        merge_probabilities(four, "flips", "mean"), torch.tensor([[0.5, 0.5]])
    )
    torch.testing.assert_close(
        merge_probabilities(four, "flips", "max"), torch.tensor([[0.5, 0.5]])
    )
    gmean = merge_probabilities(
        torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]]), "flips", "gmean"
    )
    assert torch.allclose(gmean.sum(1), torch.ones(1)) and gmean[0, 0] > 0.5


def test_sigmoid_outputs_are_not_renormalised():
    p = torch.tensor([[0.9, 0.9], [0.7, 0.7], [0.8, 0.8], [0.6, 0.6]])
    torch.testing.assert_close(merge_probabilities(p, "flips", "max"), torch.tensor([[0.9, 0.9]]))


def test_bad_arguments_raise():
    with pytest.raises(InvalidInputError):
        get_views("rot45")
    with pytest.raises(InvalidInputError):
        merge_probabilities(torch.ones(3, 2), "flips")
    with pytest.raises(InvalidInputError):
        merge_probabilities(torch.ones(4, 2), "flips", how="median")
