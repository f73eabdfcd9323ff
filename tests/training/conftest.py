"""Fixtures of the training tests: tiny recipes over the real BreaKHis images, tiny PNG trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread mostly spin-waits."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_recipe(shared_data: Path):
    """A recipe dict training resnet18 on 32-px BreaKHis crops in seconds; callers override keys."""

    def make(**changes) -> dict:
        recipe = {
            "name": "tiny",
            "seed": 0,
            "data": {
                "source": "breakhis",
                "root": str(shared_data / "breakhis"),
                "task": "binary",
                "image_size": 32,
                "resize": 36,
            },
            "model": {"architecture": "resnet18"},
            "optim": {"batch_size": 16, "lr": 0.003},
            "schedule": {"name": "none"},
            "phases": [{"name": "all", "epochs": 2}],
            "eval": {"bootstrap": 50},
            "register": {"enabled": False},
        }
        for key, value in changes.items():
            section, _, field = key.partition("__")
            if field:
                recipe.setdefault(section, {})[field] = value
            else:
                recipe[section] = value
        return recipe

    return make


@pytest.fixture
def png_tree(tmp_path: Path) -> Path:
    """A class-per-folder tree of small real PNG files (two classes told apart by brightness)."""
    import cv2

    rng = np.random.default_rng(0)
    for label, base in (("dark", 60), ("light", 190)):
        folder = tmp_path / "tree" / label
        folder.mkdir(parents=True)
        for i in range(6):
            image = np.clip(rng.normal(base, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{label}_{i}.png"), image)
    return tmp_path / "tree"
