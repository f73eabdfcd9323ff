"""Helpers for the stain tests: a Ruifrok & Johnston synthetic H&E image, a plain reader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: Ruifrok & Johnston (2001) haematoxylin and eosin OD vectors (unit rows)
RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
RUIFROK_HE = RUIFROK_HE / np.linalg.norm(RUIFROK_HE, axis=1, keepdims=True)


def synthesize_he(
    seed: int = 0, size: tuple[int, int] = (192, 256), matrix: np.ndarray = RUIFROK_HE
) -> np.ndarray:
    """uint8 RGB whose OD is concentrations × ``matrix``: pure H, pure E, mixed, background."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 4, size)
    conc = np.stack([rng.gamma(2.0, 0.4, size), rng.gamma(2.0, 0.3, size)], axis=-1)
    conc[kind == 0, 1] = 0.0
    conc[kind == 1, 0] = 0.0
    conc[kind == 3] *= 0.02
    od = conc @ matrix
    return np.clip(np.rint(256.0 * np.exp(-od) - 1.0), 0, 255).astype(np.uint8)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
