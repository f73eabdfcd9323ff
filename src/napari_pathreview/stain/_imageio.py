"""Reading images for the stain and QC commands, through the project's own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathreview.errors import ImageReadError

#: file suffixes the stain and QC commands pick up from a folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB H×W×3 (level 0 of a pyramid).

    Raises:
        ImageReadError: when the file cannot be decoded.
    """
    from napari_pathreview.io import load_image, to_rgb_uint8

    return to_rgb_uint8(np.asarray(load_image(Path(path)).data))


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in or below ``folder``, sorted, by suffix."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ImageReadError(f"no such file or folder: {folder}")
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
