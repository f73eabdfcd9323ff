"""Tissue detection once per slide, on a low-resolution level.

Stained tissue is coloured (saturated) and absorbs light (optical density > 0); glass is
neither. Otsu picks the saturation threshold of this slide, a small optical-density floor
keeps faint glass out, pen ink and blank glass are removed with the QC module's own rules
(``stain.qc``), and specks are dropped by small-object removal. The mask is computed once and
tiles are then looked up in it (an integral image makes each lookup O(1)).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["TissueMask", "detect_tissue", "slide_tissue"]

logger = logging.getLogger(__name__)

MASK_MAX_SIDE = 2048
"""The tissue mask is computed on the finest level whose longer side is at most this."""

MIN_OD = 0.05
"""Mean optical density below which a pixel is glass whatever its saturation."""


def detect_tissue(
    rgb: np.ndarray, min_object_px: int = 64, background_threshold: int = 220
) -> np.ndarray:
    """Boolean tissue mask of an RGB uint8 image.

    Args:
        rgb: H×W×3 uint8 (a low-resolution view of the whole slide).
        min_object_px: Connected tissue regions smaller than this (in mask pixels) are dropped.
        background_threshold: Grey level at or above which a pixel is blank glass (QC rule).
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    from napari_pathreview.stain.qc import QCConfig, pen_mask, tissue_mask

    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    density = -np.log((rgb.astype(np.float32) + 1.0) / 256.0).mean(axis=2)
    not_glass = tissue_mask(rgb, background_threshold=background_threshold)
    if saturation.max() - saturation.min() < 1.0:
        coloured = np.zeros(saturation.shape, bool)
    else:
        coloured = saturation > threshold_otsu(saturation)
    mask = coloured & (density > MIN_OD) & not_glass & ~pen_mask(rgb, QCConfig())
    if min_object_px > 1:
        mask = remove_small_objects(mask, max_size=min_object_px - 1)
        mask = remove_small_holes(mask, max_size=min_object_px - 1)
    return mask


@dataclass(frozen=True)
class TissueMask:
    """A slide's tissue mask and how it maps onto level 0.

    Attributes:
        mask: bool h×w at ``level``.
        level: Pyramid level it was computed on.
        downsample: Level-0 pixels per mask pixel (row, col).
        um_per_px: Level-0 pixel size in µm, None when the slide does not state it.
    """

    mask: np.ndarray
    level: int
    downsample: tuple[float, float]
    um_per_px: float | None = None
    _integral: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        integral = cv2.integral(self.mask.astype(np.uint8), sdepth=cv2.CV_32S)
        object.__setattr__(self, "_integral", integral)

    def fraction(self, y0: Any, x0: Any, h: float, w: float) -> Any:
        """Tissue fraction of level-0 boxes (scalars or arrays of origins; outside = glass)."""
        rows, cols = self.mask.shape
        dy, dx = self.downsample
        y0, x0 = np.asarray(y0, np.float64), np.asarray(x0, np.float64)
        r0 = np.clip(np.floor(y0 / dy), 0, rows).astype(np.int64)
        c0 = np.clip(np.floor(x0 / dx), 0, cols).astype(np.int64)
        r1 = np.clip(np.ceil((y0 + h) / dy), 0, rows).astype(np.int64)
        c1 = np.clip(np.ceil((x0 + w) / dx), 0, cols).astype(np.int64)
        s = self._integral
        inside = s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0]
        full = max(1.0, (h / dy) * (w / dx))
        result = np.minimum(1.0, np.where((r1 > r0) & (c1 > c0), inside, 0) / full)
        return float(result) if result.ndim == 0 else result

    @property
    def area_mm2(self) -> float:
        """Tissue area in mm² (NaN without a physical scale)."""
        if self.um_per_px is None:
            return float("nan")
        pixel_um2 = self.downsample[0] * self.downsample[1] * self.um_per_px**2
        return float(self.mask.sum()) * pixel_um2 / 1e6


def mask_level(level_shapes: Any, max_side: int = MASK_MAX_SIDE) -> int:
    """The finest level whose longer side is at most ``max_side`` (else the coarsest)."""
    for index, (height, width) in enumerate(level_shapes):
        if max(height, width) <= max_side:
            return index
    return len(level_shapes) - 1


def slide_tissue(source: Any, max_side: int = MASK_MAX_SIDE, min_object_px: int = 64) -> TissueMask:
    """Detect tissue on a low level of ``source`` (a ``SlideSource``-like object)."""
    level = mask_level(source.level_shapes, max_side)
    height, width = source.level_shapes[level]
    rgb = source.read_region(level, 0, 0, height, width)
    base_h, base_w = source.level_shapes[0]
    mask = detect_tissue(rgb, min_object_px=min_object_px)
    logger.info(
        "tissue mask on level %d (%d×%d): %.1f%% tissue",
        level,
        height,
        width,
        100.0 * float(mask.mean()),
    )
    return TissueMask(mask, level, (base_h / height, base_w / width), source.um_per_px)
