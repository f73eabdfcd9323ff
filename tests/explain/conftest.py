"""Small real models for CAM tests: a timm resnet18 and a disc-finding CNN trained here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    """A randomly initialised timm resnet18 with 3 classes (no weights download)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=3).eval()


class DiscNet(nn.Module):
    """A tiny CNN whose last conv keeps half resolution, so its CAM can outline a disc."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.features[-1]]


def make_disc_batch(n: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Dark noisy images, half with a bright disc; returns images, labels and disc masks."""
    images = rng.normal(0.1, 0.05, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), bool)
    labels = np.arange(n) % 2
    rr, cc = np.mgrid[:size, :size]
    for i in np.flatnonzero(labels):
        radius = rng.uniform(size / 10, size / 6)
        r0, c0 = rng.uniform(radius + 2, size - radius - 2, 2)
        masks[i] = (rr - r0) ** 2 + (cc - c0) ** 2 <= radius**2
        images[i, 0][masks[i]] += 0.8
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(masks)


@pytest.fixture(scope="module")
def disc_model() -> DiscNet:
    """DiscNet trained for a few seconds to tell disc from no disc."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = DiscNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        x, y, _ = make_disc_batch(32, 48, rng)
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="session")
def disc_batch():
    """The disc-image generator, for tests that need fresh discs."""
    return make_disc_batch
