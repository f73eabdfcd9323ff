"""The breast on a grey mammogram: where it is, and its grey levels stretched to one range.

Films differ in exposure and development, and carry labels and background outside the
breast; the ``crop: breast`` and ``intensity: breast`` rules of a
:class:`~napari_pathreview.preprocessing.PreprocessSpec`, and the lesion patches' negatives,
all start from the one breast found here. Neutral like ``preprocessing``: numpy and
scikit-image only.
"""

from __future__ import annotations

import numpy as np

BREAST_THRESHOLD: int = 20
"""Grey level above which a mammogram pixel may be breast (film background is darker)."""

#: Breast grey-level percentiles :func:`stretch_breast` maps to ``BREAST_RANGE``.
BREAST_PERCENTILES: tuple[float, float] = (2.0, 99.8)
BREAST_RANGE: tuple[int, int] = (16, 255)


def breast_mask(gray: np.ndarray, threshold: int = BREAST_THRESHOLD) -> np.ndarray:
    """The largest bright component of a grey mammogram: the breast, not film labels.

    All False when nothing is brighter than ``threshold``.
    """
    from skimage.measure import label

    bright = gray > threshold
    labelled = label(bright)
    if labelled.max() == 0:
        return bright
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == sizes.argmax()


def breast_box(gray: np.ndarray, threshold: int = BREAST_THRESHOLD) -> tuple[int, int, int, int]:
    """Box (r0, r1, c0, c1) of the breast (:func:`breast_mask`); the whole image without one."""
    rows, cols = np.nonzero(breast_mask(gray, threshold))
    if rows.size == 0:
        return 0, gray.shape[0], 0, gray.shape[1]
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def stretch_breast(image: np.ndarray) -> np.ndarray:
    """A uint8 mammogram with its breast's grey levels stretched to ``BREAST_RANGE``.

    The breast's 2nd grey-level percentile (its thin edge) goes to 16 and its 99.8th (the
    densest tissue) to 255, linearly, so the same tissue has about the same grey level on
    every film whatever its exposure; everything outside the breast (background, film labels)
    goes to 0. The top percentile is high so that a mass, often the brightest 1 % of a fatty
    breast, keeps its texture. An image without a breast, or a flat one, is returned as is.
    """
    gray = image if image.ndim == 2 else image[..., :3].mean(axis=-1)
    breast = breast_mask(gray)
    if not breast.any():
        return image
    low, high = np.percentile(gray[breast], BREAST_PERCENTILES)
    if high - low < 4:
        return image
    out_low, out_high = BREAST_RANGE
    levels = np.arange(256, dtype=np.float32)
    lut = np.clip(out_low + (levels - low) * (out_high - out_low) / (high - low), 0, 255)
    out = np.rint(lut).astype(np.uint8)[image]
    out[~breast] = 0
    return out
