"""Transparent pixels show the glass: alpha is blended onto white, one rule for every colour read.

A pixel with an alpha sample (RGBA, or grey + alpha) is composited "over" white by its own
alpha, ``c·a/255 + 255·(1 − a/255)`` rounded, in 8 bits (after the depth rule of
:mod:`.colour_depth`), in integer arithmetic. Per pixel, so a PNG or TIFF decoded whole, a lazy
stack's chunk, a TIFF slide's tile and an OpenSlide region of the same pixels convert alike.
Dropping the alpha instead would show whatever RGB lies under alpha 0 (often black), which
the tissue detector and QC would take for tissue. White is the glass a slide's padding shows
(:data:`.slide_source.BACKGROUND`) and what OpenSlide's own callers composite onto when a slide
states no background colour (openslide-python's thumbnails and Deep Zoom tiles); OpenSlide
returns premultiplied ARGB, which openslide-python un-premultiplies into the straight RGBA
blended here, its unscanned areas (0, 0, 0, 0).
"""

from __future__ import annotations

import numpy as np

GLASS = 255
"""Slide glass is white: what a transparent pixel shows, and a slide's padding."""

ALPHA_SAMPLES = (2, 4)
"""Sample counts whose last sample is alpha: grey + alpha, RGBA."""


def has_alpha(samples: int) -> bool:
    """Whether pixels of ``samples`` samples carry alpha as their last one."""
    return samples in ALPHA_SAMPLES


def over_glass(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 ``colour`` (…×C) composited by uint8 ``alpha`` (…, the same pixels) onto white.

    Elementwise and exact (integer, rounded to nearest: no ties occur), so any tiling of an
    image gives the pixels the whole image gives.
    """
    weight = alpha.astype(np.uint32)[..., None]
    blended = colour.astype(np.uint32) * weight + GLASS * (255 - weight)
    return ((blended + 127) // 255).astype(np.uint8)


def flatten_alpha(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (…×S) without their alpha: ×2 or ×4 composited onto white (×1 or ×3),
    other sample counts returned as they are."""
    if pixels.ndim < 3 or not has_alpha(pixels.shape[-1]):
        return pixels
    return over_glass(pixels[..., :-1], pixels[..., -1])
