"""Reinhard colour transfer: match per-channel LAB mean and standard deviation to a target.

LAB is OpenCV's 8-bit convention (L·255/100, a+128, b+128), so seed 001's published BreaKHis
statistics work as a preset. The numpy path maps the 8-bit LAB image through one 256-entry
look-up table per channel (the affine map is per channel), which is why it keeps up with a
plain OpenCV implementation. ``fit`` over many images accumulates global sums, as seed 001 did.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.stain.base import MIN_TISSUE_PIXELS, StainNormalizer

#: the only LAB convention a Reinhard target may hold (L·255/100, a+128, b+128)
COLOR_SPACE = "opencv_lab8"
#: Seed 001's global BreaKHis statistics (OpenCV 8-bit LAB), usable with ``normalizer_from_dict``.
REINHARD_BREAKHIS_PRESET: dict[str, Any] = {
    "method": "reinhard",
    "version": 1,
    "color_space": COLOR_SPACE,
    "means": [180.8, 148.6, 116.5],
    "stds": [35.4, 17.5, 11.1],
    "source": "seed 001: global BreaKHis training-set statistics",
}

#: pixels with every channel at or above this are background (OD < 0.15); tissue check only
BACKGROUND_LEVEL = 220
#: a tile needs this fraction of non-background pixels to be normalised
MIN_TISSUE_FRACTION = 0.01
#: LAB standard deviation (8-bit units) below which a channel is treated as flat
MIN_STD = 1.0


class ReinhardNormalizer(StainNormalizer):
    """Reinhard et al. (2001) in OpenCV 8-bit LAB.

    Args:
        means: target LAB means (set together with ``stds`` to skip ``fit``).
        stds: target LAB standard deviations.
    """

    name: ClassVar[str] = "reinhard"

    def __init__(self, means: Any = None, stds: Any = None) -> None:
        super().__init__()
        self.means: np.ndarray | None = None
        self.stds: np.ndarray | None = None
        if (means is None) != (stds is None):
            raise InvalidInputError("give both means and stds, or neither")
        if means is not None:
            self._load_state({"means": means, "stds": stds})

    @property
    def is_fitted(self) -> bool:
        return self.means is not None

    def _image_stats(self, image: np.ndarray) -> Any | None:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
        if _tissue_pixels(image) < _min_tissue(image) or lab.std(axis=0).min() < MIN_STD:
            return None
        return lab.shape[0], lab.sum(axis=0), (lab**2).sum(axis=0)

    def _combine_stats(self, stats: list[Any]) -> None:
        count = sum(s[0] for s in stats)
        total = np.sum([s[1] for s in stats], axis=0)
        squares = np.sum([s[2] for s in stats], axis=0)
        means = total / count
        stds = np.sqrt(np.maximum(squares / count - means**2, 0.0))
        self._load_state({"means": means, "stds": stds})

    def _transform_numpy(self, image: np.ndarray) -> tuple[np.ndarray, str | None]:
        if _tissue_pixels(image) < _min_tissue(image):
            return image, "no_tissue"
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        mean, std = cv2.meanStdDev(lab)
        mean, std = mean.ravel(), std.ravel()
        if std.min() < MIN_STD:
            return image, "low_contrast"
        levels = np.arange(256, dtype=np.float64)[:, None]
        lut = (levels - mean) * (self.stds / std) + self.means
        lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8).reshape(256, 1, 3)
        return cv2.cvtColor(cv2.LUT(lab, lut), cv2.COLOR_LAB2RGB), None

    def _transform_torch(self, batch: Any) -> tuple[Any, Any]:
        import torch

        from napari_pathreview.stain._lab import lab8_to_rgb255, rgb255_to_lab8

        n, _, h, w = batch.shape
        lab = rgb255_to_lab8(batch)
        flat = lab.flatten(2)
        mean = flat.mean(dim=2, keepdim=True)
        std = flat.std(dim=2, unbiased=False, keepdim=True)
        tissue = (batch.amin(dim=1) < BACKGROUND_LEVEL).flatten(1).sum(1)
        codes = torch.zeros(n, dtype=torch.long, device=batch.device)
        codes[std.squeeze(2).amin(1) < MIN_STD] = 2
        codes[tissue < max(MIN_TISSUE_PIXELS, MIN_TISSUE_FRACTION * h * w)] = 1
        target_m = torch.as_tensor(self.means, dtype=batch.dtype, device=batch.device).view(1, 3, 1)
        target_s = torch.as_tensor(self.stds, dtype=batch.dtype, device=batch.device).view(1, 3, 1)
        scale = target_s / std.clamp_min(MIN_STD)
        out = ((flat - mean) * scale + target_m).clamp(0, 255).view(n, 3, h, w)
        return lab8_to_rgb255(out), codes

    def _state(self) -> dict[str, Any]:
        return {
            "color_space": COLOR_SPACE,
            "means": [float(v) for v in self.means],
            "stds": [float(v) for v in self.stds],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore means/stds, refusing values in another LAB convention (they recolour wrongly).

        Targets from other tools (scikit-image, StainTools) hold CIELAB (L 0-100, a/b around 0);
        read as OpenCV 8-bit LAB they produce a plausible-looking but wrong image.
        """
        space = state.get("color_space", COLOR_SPACE)
        if space != COLOR_SPACE:
            raise ValueError(
                f"color_space {space!r} is not supported; Reinhard targets hold OpenCV 8-bit LAB "
                f"({COLOR_SPACE!r}): refit with `pathreview stain fit --method reinhard`"
            )
        means = np.asarray(state["means"], dtype=np.float64).reshape(3)
        stds = np.asarray(state["stds"], dtype=np.float64).reshape(3)
        if not (np.isfinite(means).all() and np.isfinite(stds).all()) or (stds <= 0).any():
            raise ValueError("means/stds must be finite and stds positive")
        if (means < 0).any() or (means > 255).any() or (stds > 255).any():
            raise ValueError(
                f"means {means.round(2).tolist()} / stds {stds.round(2).tolist()} are not "
                f"OpenCV 8-bit LAB ({COLOR_SPACE!r}: every value within 0-255)"
            )
        self.means, self.stds = means, stds


def _min_tissue(image: np.ndarray) -> float:
    return max(MIN_TISSUE_PIXELS, MIN_TISSUE_FRACTION * image.shape[0] * image.shape[1])


def _tissue_pixels(image: np.ndarray) -> float:
    """Non-background pixels (any channel below ``BACKGROUND_LEVEL``), estimated on a grid."""
    step = 4 if image.shape[0] * image.shape[1] > 65536 else 1
    sub = image[::step, ::step]
    return float((sub.min(axis=2) < BACKGROUND_LEVEL).sum()) * step * step
