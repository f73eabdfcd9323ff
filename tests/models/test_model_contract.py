"""The PathReviewModel contract, checked for every registered architecture and a few timm names."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from napari_pathreview.models import ModelSpec, PathReviewModel, TokenReshape


def test_is_a_pathreview_model_with_base_forward(forward_pass) -> None:
    # forward() must be features → head, so CAM hooks and training see the same computation.
    assert isinstance(forward_pass.model, PathReviewModel)
    assert type(forward_pass.model).forward is PathReviewModel.forward


def test_logits_have_batch_by_classes_shape(forward_pass) -> None:
    assert forward_pass.logits.shape == (2, forward_pass.num_classes)
    assert torch.isfinite(forward_pass.logits).all()


def test_cam_target_layers_receive_gradients(forward_pass) -> None:
    model = forward_pass.model
    layers = model.cam_target_layers()
    assert layers and all(isinstance(layer, nn.Module) for layer in layers)
    assert len(forward_pass.cam_activations) == len(layers)
    for gradient in forward_pass.cam_gradients:
        assert gradient is not None
        assert gradient.abs().sum() > 0


def test_cam_reshape_transform_gives_spatial_maps(forward_pass) -> None:
    transform = forward_pass.model.cam_reshape_transform
    for activation in forward_pass.cam_activations:
        spatial = activation if transform is None else transform(activation)
        assert spatial.ndim == 4 and spatial.shape[0] == 2
        assert spatial.shape[-1] > 1 and spatial.shape[-2] > 1


def test_every_parameter_gets_a_gradient(forward_pass) -> None:
    unused = [n for n, p in forward_pass.model.named_parameters() if p.grad is None]
    assert unused == []


def test_parameter_groups_cover_every_parameter_once_with_head_last(
    forward_pass,
) -> None:
    model = forward_pass.model
    groups = model.parameter_groups()
    names = [name for name, _ in groups]
    assert names[-1] == "head" and len(names) == len(set(names)) and len(names) >= 3
    ids = [id(p) for _, params in groups for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    head_ids = {id(p) for p in groups[-1][1]}
    assert {id(p) for p in model.get_classifier().parameters()} <= head_ids


def test_spec_describes_the_input(forward_pass) -> None:
    spec = forward_pass.model.spec
    assert isinstance(spec, ModelSpec)
    assert spec.input_size == (3, 224, 224)
    assert len(spec.mean) == len(spec.std) == 3
    assert spec.modality_hint in ("histology", "mammogram")
    assert spec.num_classes == forward_pass.num_classes


def test_cam_layer_names_resolve_to_the_same_modules(forward_pass) -> None:
    model = forward_pass.model
    resolved = [model.get_submodule(path) for path in model.cam_target_layer_names()]
    assert resolved == model.cam_target_layers()


def test_reset_classifier_changes_the_output_width(forward_pass) -> None:
    model = copy.deepcopy(forward_pass.model)
    model.reset_classifier(5)
    with torch.no_grad():
        logits = model.forward_head(forward_pass.features)
    assert logits.shape == (2, 5)
    assert model.spec.num_classes == 5
    assert model.parameter_groups()[-1][0] == "head"


def test_pre_logits_drop_the_classifier(forward_pass) -> None:
    model = forward_pass.model
    with torch.no_grad():
        pre = model.forward_head(forward_pass.features, pre_logits=True)
    assert pre.shape[0] == 2 and pre.shape[-1] == model.get_classifier().in_features


@pytest.mark.parametrize("spatial_format", ["NCHW", "NHWC"])
def test_token_reshape_folds_tokens_and_passes_maps(spatial_format: str) -> None:
    transform = TokenReshape(1, (14, 14), spatial_format)
    tokens = torch.arange(2 * 197 * 8, dtype=torch.float32).reshape(2, 197, 8)
    maps = transform(tokens)
    assert maps.shape == (2, 8, 14, 14)
    assert torch.equal(maps[:, :, 0, 1], tokens[:, 2, :])  # token 0 is [CLS]
    nhwc = torch.zeros(2, 7, 7, 16)
    expected = (2, 16, 7, 7) if spatial_format == "NHWC" else (2, 7, 7, 16)
    assert transform(nhwc).shape == expected
