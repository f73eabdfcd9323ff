"""Where a pixel is: the one rule between napari's and GeoJSON's (QuPath's) pixel coordinates.

napari puts the CENTRE of pixel ``i`` at coordinate ``i`` (the pixel spans [i − ½, i + ½));
GeoJSON as QuPath, shapely and rasterio read it puts the pixel's top-left CORNER at ``i``
(it spans [i, i + 1)). So the square QuPath writes as (0, 0)–(10, 10) covers pixels 0..9,
which napari draws from −0.5 to 9.5. Every ``Roi`` holds napari coordinates; GeoJSON
coordinates are converted here, at the file boundary, and nowhere else. Resampling follows
the same rule: pixel centres, not coordinates, scale with the image.
"""

from __future__ import annotations

import numpy as np

CORNER = "corner"
"""GeoJSON, QuPath, shapely, rasterio: pixel ``i`` spans [i, i + 1)."""
CENTRE = "centre"
"""napari, numpy indices, skimage.draw: pixel ``i`` spans [i − ½, i + ½)."""
PIXEL_ORIGINS = (CORNER, CENTRE)
_HALF_PIXEL = 0.5


def corner_to_centre(points: np.ndarray, origin: str = CORNER) -> np.ndarray:
    """napari coordinates of positions given with ``origin`` (any axis order, any shape).

    Args:
        points: Positions from a GeoJSON document.
        origin: The document's convention: ``CORNER`` (QuPath) or ``CENTRE`` (files our
            writer produced before it wrote the convention down, which already hold napari's).
    """
    points = np.asarray(points, dtype=float)
    return points - _HALF_PIXEL if origin == CORNER else points


def centre_to_corner(points: np.ndarray) -> np.ndarray:
    """GeoJSON (corner-origin) coordinates of napari positions; the inverse of the above."""
    return np.asarray(points, dtype=float) + _HALF_PIXEL


def resample_centres(points: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """napari coordinates of ``points`` on a copy of their image resized by ``factor``.

    Pixel centres map onto pixel centres, so a point at the centre of pixel 0 of a 1024-pixel
    film lands at the centre of the 4-pixel block's image in a 256-pixel copy
    ((0 + ½)·¼ − ½ = −0.375), not at 0.
    """
    return (np.asarray(points, dtype=float) + _HALF_PIXEL) * factor - _HALF_PIXEL
