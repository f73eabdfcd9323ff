"""PNG, JPEG, PGM and BMP, decoded whole with their bit depth (Pillow; OpenCV: 16-bit RGB PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io._core import LoadedImage, finish_loaded
from napari_pathreview.io.colour_depth import png_bits


def load_raster(path: Path) -> LoadedImage:
    """Open a PNG/JPEG/PGM/BMP as a single-level ``LoadedImage``; 16-bit colour PNG scales by
    its stated depth (:func:`.colour_depth.png_bits`), as a TIFF or DICOM does."""
    pixels = read_raster(path)
    bits = png_bits(path) if path.suffix.lower() == ".png" else None
    return finish_loaded(path, pixels, colour_bits=bits)


def _png_is_16bit_colour(path: Path) -> bool:
    """Pillow reduces 16-bit RGB(A) PNGs to 8 bits; detect them from the IHDR chunk."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return (
        len(header) == 26
        and header[:8] == b"\x89PNG\r\n\x1a\n"
        and header[24] == 16
        and header[25] in (2, 6)
    )


def _read_16bit_colour_png(path: Path) -> np.ndarray:
    import cv2

    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageReadError(f"{path}: cannot decode this 16-bit PNG (corrupt or truncated?)")
    order = [2, 1, 0, 3][: decoded.shape[-1]]  # OpenCV gives BGR(A)
    return np.ascontiguousarray(decoded[..., order])


def read_raster(path: str | Path) -> np.ndarray:
    """Decode a PNG/JPEG/PGM/BMP completely into an array, keeping its bit depth.

    Raises:
        ImageReadError: Truncated or corrupt data (Pillow is told not to accept
            truncated files, so half-grey images never reach a model).
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    path = Path(path)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if path.suffix.lower() == ".png" and _png_is_16bit_colour(path):
        return _read_16bit_colour_png(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _pil_to_array(image)
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"{path}: too large to decode into memory ({error}); "
            "convert it to a pyramidal tiled TIFF and open that instead"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error


def _pil_to_array(image: Any) -> np.ndarray:
    """Pillow image → numpy, with palette and odd modes expanded deliberately."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("L" if mode == "1" else "RGB")
    elif mode == "I":  # 32-bit int container (Pillow's 16-bit grey on some builds)
        array = np.asarray(image)
        if array.size and array.min() >= 0 and array.max() <= 65535:
            return array.astype(np.uint16)
        return array
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    return np.asarray(image)
