"""Inputs for the stain tests: a Ruifrok & Johnston synthetic H&E image and real tiles."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from stain_testutils import read_rgb, synthesize_he


@pytest.fixture(scope="session")
def ruifrok_image() -> np.ndarray:
    return synthesize_he()


@pytest.fixture(scope="session")
def he_target(shared_data: Path) -> np.ndarray:
    """A real H&E reference tile (downscaled to keep tests quick)."""
    image = read_rgb(shared_data / "he_reference" / "HEnorm_python_example1.png")
    return cv2.resize(image, (512, 512), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def breakhis_images(shared_data: Path) -> list[np.ndarray]:
    """Every BreaKHis image in the shared data, as uint8 RGB."""
    files = sorted((shared_data / "breakhis").glob("*.png"))
    assert files, "no BreaKHis images in shared data"
    return [read_rgb(f) for f in files]


@pytest.fixture(scope="session")
def breakhis_tiles(breakhis_images: list[np.ndarray]) -> np.ndarray:
    """Eight real 224×224 tiles (N×H×W×3) from different BreaKHis images."""
    return np.stack([img[100:324, 200:424] for img in breakhis_images[::8][:8]])
