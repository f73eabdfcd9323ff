"""Reading images for the stain and QC commands: the project's reader first, OpenCV as fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from napari_pathreview.errors import ImageReadError

logger = logging.getLogger(__name__)

#: file suffixes the stain and QC commands pick up from a folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB H×W×3 (level 0 of a pyramid).

    Raises:
        ImageReadError: when the file cannot be decoded.
    """
    path = Path(path)
    try:
        from napari_pathreview.io import load_image, to_rgb_uint8
    except ImportError:
        load_image = None
    if load_image is not None:
        return to_rgb_uint8(np.asarray(load_image(path).data))
    import cv2

    from napari_pathreview.stain.base import to_rgb_uint8 as fallback

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageReadError(f"cannot decode {path}: not an image or corrupt")
    if data.ndim == 3 and data.shape[2] >= 3:
        code = cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
        data = cv2.cvtColor(data, code)
    return fallback(data)


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
