"""Fixtures for the model-zoo tests: one forward/backward per architecture, shared."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from napari_pathreview.models import create_model, list_architectures

#: Registered seed architectures are full size: building and running them on CPU is slow.
LARGE = {"cspresnet50_fpn_se", "hybrid_effnetv2s_vitb16", "ssresnext50", "hmc_resnet50", "resnet50"}
#: Plain timm names the contract must also hold for (a CNN, a mobile net, a ViT with tokens).
TIMM_NAMES = ("resnet18", "mobilenetv3_small_100", "vit_tiny_patch16_224")
NUM_CLASSES = 3


@dataclass
class ForwardPass:
    """One forward + backward of a 2×3×224×224 batch, with what the contract tests inspect."""

    model: torch.nn.Module
    num_classes: int
    features: torch.Tensor
    logits: torch.Tensor
    cam_activations: list[torch.Tensor]
    cam_gradients: list[torch.Tensor | None]


def run_forward_pass(name: str) -> ForwardPass:
    """Build ``name`` with NUM_CLASSES outputs and run one hooked forward + backward."""
    torch.manual_seed(0)
    model = create_model(name, NUM_CLASSES).eval()
    layers = model.cam_target_layers()
    activations: list[torch.Tensor] = []
    gradients: list[torch.Tensor | None] = [None] * len(layers)

    def hook_for(index: int):
        def hook(module, args, output):
            activations.append(output.detach())
            output.register_hook(lambda grad: gradients.__setitem__(index, grad))

        return hook

    handles = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    try:
        features = model.forward_features(torch.randn(2, 3, 224, 224))
        logits = model.forward_head(features)
        logits[:, 0].sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    return ForwardPass(
        model, NUM_CLASSES, features.detach(), logits.detach(), activations, gradients
    )


def contract_names() -> list:
    """Every registered architecture plus a few timm names; the full-size ones marked slow."""
    return [
        pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
        for n in [*list_architectures(), *TIMM_NAMES]
    ]


@pytest.fixture(scope="module", params=contract_names())
def forward_pass(request: pytest.FixtureRequest) -> ForwardPass:
    """One forward/backward per architecture, shared by the contract tests (pytest groups them)."""
    return run_forward_pass(request.param)
