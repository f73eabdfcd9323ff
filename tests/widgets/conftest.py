"""Fixtures for the widget tests: tiny registered models and sample layers in a real viewer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TINY_ARCH = "mobilenetv3_small_050"
INPUT = [3, 64, 64]


def register_tiny(
    name: str, modality: str, classes: list[str], seed: int = 0, **card_fields: Any
) -> str:
    """Register a small random-weight model (``card_fields`` added to its card); returns
    ``name@version``."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(seed)
    model = create_model(TINY_ARCH, len(classes))
    card = {
        "name": name,
        "task": "binary" if len(classes) == 2 else "mammogram",
        "classes": classes,
        "modality": modality,
        "input_size": INPUT,
        "threshold": 0.5 if len(classes) == 2 else None,
        "metrics": {"test": {"auc": 0.75, "balanced_accuracy": 0.7}},
        "description": "tiny random-weight model for the widget tests",
        **card_fields,
    }
    version = ModelRegistry().register(model, card)
    return f"{name}@{version}"


@pytest.fixture
def histology_model() -> str:
    return register_tiny("tiny-histology", "histology", ["benign", "malignant"])


@pytest.fixture
def mammogram_model() -> str:
    return register_tiny("tiny-mammogram", "mammogram", ["normal", "benign", "malignant"], seed=1)


@pytest.fixture
def register_model() -> Callable[..., str]:
    return register_tiny


@pytest.fixture
def slow_loader() -> Callable[[float], Callable[[str, str], tuple[Any, Any]]]:
    return make_slow_loader


def make_slow_loader(seconds: float) -> Callable[[str, str], tuple[Any, Any]]:
    """A model loader whose models sleep in every forward pass (a stand-in for a big model)."""
    from napari_pathreview.inference.analysis import default_loader

    def load(ref: str, device: str) -> tuple[Any, Any]:
        model, card = default_loader(ref, device)
        model.register_forward_pre_hook(lambda _module, _inputs: time.sleep(seconds))
        return model, card

    return load


@pytest.fixture
def open_sample(make_napari_viewer: Any, sample_data: Path) -> Callable[..., tuple[Any, list[Any]]]:
    """Open a sample file through the plugin's reader in a fresh viewer."""
    viewer = make_napari_viewer()

    def opener(relative: str) -> tuple[Any, list[Any]]:
        layers = viewer.open(sample_data / relative, plugin="napari-pathreview")
        return viewer, list(layers)

    return opener


def dock(viewer: Any, name: str) -> Any:
    """Open a PathReview widget as a user does, from Plugins ▸ PathReview (napari's proxy)."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-pathreview", name)
    return widget


@pytest.fixture
def open_widget() -> Callable[[Any, str], Any]:
    """``open_widget(viewer, "Analyze")``: the widget napari's plugin machinery builds."""
    return dock


def register_uniform(name: str = "tiny-uniform") -> str:
    """A 3-class mammogram model whose head is zeroed: it outputs 1/3 for every class."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    model = create_model(TINY_ARCH, 3)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    card = {
        "name": name,
        "task": "mammogram",
        "classes": ["normal", "benign", "malignant"],
        "modality": "mammogram",
        "input_size": INPUT,
        "metrics": {
            "test": {"auc": 1.0, "n": 5, "ci95": {"auc": [0.62, 1.0]}},
        },
        "description": "uniform-output model for the honest-panel tests",
    }
    version = ModelRegistry().register(model, card)
    return f"{name}@{version}"


@pytest.fixture
def uniform_model() -> str:
    return register_uniform()
