"""A tiny registered model (timm resnet18 at 64², random weights) and small RGB images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pathreview.models import create_model
from napari_pathreview.registry import ModelRegistry

BINARY_CARD = {
    "name": "tiny",
    "architecture": "resnet18",
    "task": "binary",
    "classes": ["benign", "malignant"],
    "modality": "histology",
    "input_size": [3, 64, 64],
    "stain_method": "none",
    "threshold": 0.3,
    "description": "test model with random weights",
}


def _model(num_classes: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet18", num_classes).eval()


@pytest.fixture
def registry() -> ModelRegistry:
    """The registry in this test's own $PATHREVIEW_HOME."""
    return ModelRegistry()


@pytest.fixture
def binary_ref(registry: ModelRegistry) -> str:
    """``tiny@1``: a binary resnet18 with threshold 0.3 on P(malignant)."""
    version = registry.register(_model(2), BINARY_CARD)
    return f"tiny@{version}"


@pytest.fixture
def subtype_ref(registry: ModelRegistry) -> str:
    """``tiny3@1``: a 3-class resnet18 (argmax decisions)."""
    card = {**BINARY_CARD, "name": "tiny3", "task": "subtype", "classes": ["a", "b", "c"]}
    card["threshold"] = None
    version = registry.register(_model(3, seed=1), card)
    return f"tiny3@{version}"


def _tissue_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A pinkish random RGB image, dark enough to count as tissue (below 220)."""
    base = np.array([180, 110, 160], np.float32)
    noise = rng.normal(0, 30, (h, w, 3))
    return np.clip(base + noise, 0, 210).astype(np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tissue_like():
    """``tissue_like(rng, h, w)``: a random tissue-coloured RGB uint8 image."""
    return _tissue_like


@pytest.fixture(scope="session")
def binary_card() -> dict:
    """The card fields of ``tiny`` (copy before changing)."""
    return dict(BINARY_CARD)
