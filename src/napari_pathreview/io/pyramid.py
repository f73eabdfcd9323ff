"""Write tiled, pyramidal TIFFs: the layout slide viewers (and our lazy reader) browse fast.

Each level halves the previous one with area averaging (not striding, which aliases
nuclei into noise). Reduced levels are stored as SubIFDs of level 0, the OME/QuPath
convention that tifffile reads back as one series with ``levels``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathreview.errors import InvalidInputError


def build_levels(image: np.ndarray, n_levels: int, min_size: int = 64) -> list[np.ndarray]:
    """Level 0 and up to ``n_levels - 1`` halvings, none with an edge under ``min_size``."""
    import cv2

    levels = [np.ascontiguousarray(image)]
    while len(levels) < n_levels:
        height, width = levels[-1].shape[:2]
        if min(height, width) // 2 < min_size:
            break
        half = cv2.resize(levels[-1], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        levels.append(half.reshape((height // 2, width // 2) + levels[-1].shape[2:]))
    return levels


def write_pyramidal_tiff(
    image: np.ndarray,
    path: str | Path,
    *,
    tile: int = 256,
    n_levels: int = 3,
    compression: str = "jpeg",
    microns_per_pixel: float | None = None,
) -> Path:
    """Save an RGB uint8 or grayscale image as a tiled pyramidal TIFF.

    Args:
        image: H×W×3 uint8 (histology) or H×W uint8/uint16.
        path: Destination ``.tif``.
        tile: Tile edge in pixels (multiple of 16, as TIFF requires).
        n_levels: Number of levels including level 0.
        compression: "jpeg" (small, lossy, RGB uint8 only), "deflate", "zstd" or "none".
        microns_per_pixel: Pixel size of level 0 when known; written to the resolution tags.

    Returns:
        The written path.

    Raises:
        InvalidInputError: Bad tile size, image shape or a codec the dtype cannot use.
    """
    import tifffile

    if tile <= 0 or tile % 16:
        raise InvalidInputError(f"tile must be a positive multiple of 16, got {tile}")
    rgb = image.ndim == 3 and image.shape[-1] == 3
    if not (image.ndim == 2 or rgb):
        raise InvalidInputError(f"expected H×W or H×W×3, got {image.shape}")
    if compression == "jpeg" and image.dtype != np.uint8:
        raise InvalidInputError("JPEG compression needs uint8 pixels; use deflate for 16-bit")
    levels = build_levels(image, n_levels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict = {
        "tile": (tile, tile),
        "compression": None if compression == "none" else compression,
        "photometric": "rgb" if rgb else "minisblack",
    }
    if compression == "jpeg":
        options["compressionargs"] = {"level": 90}
    if microns_per_pixel:
        options.update(
            resolution=(1e4 / microns_per_pixel, 1e4 / microns_per_pixel),
            resolutionunit="CENTIMETER",
        )
    with tifffile.TiffWriter(path, bigtiff=image.nbytes > 2**31) as writer:
        writer.write(levels[0], subifds=len(levels) - 1, **options)
        for level in levels[1:]:
            if microns_per_pixel:
                factor = image.shape[0] / level.shape[0]
                mpp = microns_per_pixel * factor
                options.update(resolution=(1e4 / mpp, 1e4 / mpp))
            writer.write(level, subfiletype=1, **options)
    return path
