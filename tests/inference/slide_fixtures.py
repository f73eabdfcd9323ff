"""Small generated slides (pyramidal TIFFs with a µm scale) and a tiny model with a resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathreview.io.pyramid import write_pyramidal_tiff

MODEL_UM = 0.5
"""The tiny test model's training resolution (µm per input pixel; input 64 px)."""


def tissue_slide(
    height: int = 512, width: int = 768, seed: int = 0, left_of: int | None = None
) -> np.ndarray:
    """Glass (240) with a tissue-coloured ellipse (or all columns < ``left_of``), textured."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 240, np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    if left_of is not None:
        tissue = xx < left_of
    else:
        tissue = ((yy - height / 2) / (0.4 * height)) ** 2 + (
            (xx - width / 2) / (0.4 * width)
        ) ** 2 < 1
    base = np.array([175, 105, 160], np.float32) + 25 * np.sin(xx[..., None] / 9.0 + seed)
    noisy = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 215).astype(np.uint8)
    image[tissue] = noisy[tissue]
    return image


def write_slide(
    path: Path,
    image: np.ndarray,
    um_per_px: float | None = 0.25,
    levels: int = 3,
    compression: str = "deflate",
) -> Path:
    return write_pyramidal_tiff(
        image,
        path,
        tile=128,
        n_levels=levels,
        compression=compression,
        microns_per_pixel=um_per_px,
    )


def register_tiny(
    registry,
    pixel_size: float | None = MODEL_UM,
    name: str = "tinyslide",
    preprocess: dict | None = None,
    qc: dict | None = None,
) -> str:
    """Register a random-weight resnet18 at 64 px with ``preprocess.pixel_size`` (and any
    other ``preprocess`` fields given; ``qc``: the card's QC thresholds); its ref."""
    import torch

    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", 2).eval()
    card = {
        "name": name,
        "architecture": "resnet18",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 64, 64],
        "stain_method": "none",
        "threshold": 0.5,
        "preprocess": {
            "input_size": [3, 64, 64],
            "pixel_size": pixel_size,
            "pixel_unit": "um",
            **(preprocess or {}),
        },
        **({"qc": qc} if qc is not None else {}),
    }
    version = registry.register(model, card)
    return f"{name}@{version}"
