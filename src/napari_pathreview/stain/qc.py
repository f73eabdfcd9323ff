"""Image quality control: blur, tissue fraction, pen marks and over-exposure.

Defaults follow seed 001 (Laplacian variance < 75 is blurry; under 40 % of pixels darker than
220 is too little tissue). Blur and clipping are measured on tissue only (:func:`tissue_mask`,
the one tissue rule): blank glass has no edges, so counting it would lower the blur score of a
sharp patch in proportion to its glass, and a scanner writes glass as pure white, which is not
over-exposed tissue. Over-exposure that does not clip (a washed-out scan, its tissue pale
grey-white like glass) is told from glass by the image's dark end instead (:func:`dark_level`):
however much glass a well-exposed image shows, its tissue keeps dark nuclei. Pen marks are
strongly saturated green-to-blue pixels (hue 70°-230°, short of haematoxylin's blue-purple) or
near-black ones, which H&E does not produce.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from napari_pathreview.stain.qc_config import QCConfig, QCConfigError

__all__ = [
    "CHECKS",
    "QCConfig",
    "QCConfigError",
    "QCResult",
    "assess_quality",
    "dark_level",
    "tissue_mask",
]

#: The name of each check (``QCResult.checks``), in the order their reasons are listed.
#: ``blur_unmeasured``: too little tissue clear of glass to score focus on.
CHECKS: tuple[str, ...] = ("blur", "blur_unmeasured", "tissue", "pen", "exposure")


@dataclass(frozen=True)
class QCResult:
    """Scores of one image and the verdict; ``reasons`` names each failed check.

    ``blur_score`` is None when the image has too little tissue to measure it on
    (:data:`MIN_BLUR_PIXELS`); ``saturation_fraction`` is a fraction of the stained pixels
    (0 without any), the other fractions of all pixels; ``dark_level`` is the grey level of the
    darkest 1 % of the pixels (:func:`dark_level`). ``checks`` names the failed checks
    (:data:`CHECKS`, and ``upsampled`` from ``inference.preprocess.image_quality``), one per
    reason, so a caller counts failures by check without reading the reasons' wording (the
    slide engine's per-tile QC, ``inference.slide_qc``).
    """

    blur_score: float | None
    tissue_fraction: float
    pen_fraction: float
    saturation_fraction: float
    dark_level: int
    passed: bool
    reasons: tuple[str, ...]
    checks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (reasons joined by ';'; ``checks`` left out, the reasons say it) for CSV
        rows and JSON."""
        row = asdict(self)
        del row["checks"]
        row["reasons"] = ";".join(self.reasons)
        return row


def _as_rgb(image: Any) -> np.ndarray:
    from napari_pathreview.stain.base import to_rgb_uint8

    return to_rgb_uint8(image)


def tissue_mask(image: Any, background_threshold: int = 220) -> np.ndarray:
    """Boolean H×W mask of tissue: grayscale below ``background_threshold`` (seed 001's rule)."""
    return _tissue(_gray(_as_rgb(image)), background_threshold)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _tissue(gray: np.ndarray, background_threshold: int) -> np.ndarray:
    return gray < background_threshold


#: Tissue pixels (clear of glass) a blur score needs; with fewer it is not measured, since the
#: Laplacian variance of a few dozen pixels says little about focus.
MIN_BLUR_PIXELS = 256


def blur_score(gray: np.ndarray, tissue: np.ndarray | None = None) -> float | None:
    """Variance of the Laplacian of a uint8 grayscale image (higher is sharper).

    With a ``tissue`` mask only pixels whose 3×3 neighbourhood is all tissue count, so neither
    flat glass nor the tissue/glass border moves the score; None when fewer than
    :data:`MIN_BLUR_PIXELS` remain.
    """
    laplacian = cv2.Laplacian(gray, cv2.CV_64F)
    if tissue is None:
        return float(laplacian.var())
    inner = cv2.erode(tissue.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if int(inner.sum()) < MIN_BLUR_PIXELS:
        return None
    return float(laplacian[inner].var())


#: Colour (max − min channel, 0-255) that marks a bright pixel as pale stain, not glass: glass
#: is grey (BreaKHis glass stays under ~15), eosin lifted to a clipped 255 keeps its pink.
STAIN_CHROMA = 20


def _channel_range(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel max and min channel (element-wise over the three planes: numpy's reduction
    along a length-3 last axis is several times slower)."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.maximum(np.maximum(red, green), blue), np.minimum(np.minimum(red, green), blue)


def _stained(high: np.ndarray, low: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """``tissue`` plus coloured pixels (:data:`STAIN_CHROMA`) lifted above the background level."""
    return tissue | (high.astype(np.int16) - low >= STAIN_CHROMA)


def clipped_fraction(rgb: np.ndarray, tissue: np.ndarray) -> float:
    """Fraction of stained pixels with a channel at 255 or 0 (0.0 when none is stained).

    Stained pixels are ``tissue`` plus coloured ones (:data:`STAIN_CHROMA`) that over-exposure
    lifted above the background level; blank glass, pure white or grey, is never counted.
    """
    high, low = _channel_range(rgb)
    stained = _stained(high, low, tissue)
    count = int(stained.sum())
    if count == 0:
        return 0.0
    clipped = (high == 255) | (low == 0)
    return float((clipped & stained).sum()) / count


CHANNELS = ("red", "green", "blue")


def most_clipped_channel(rgb: np.ndarray, tissue: np.ndarray) -> tuple[str, float]:
    """The channel and end ("red at 255") clipped in most stained pixels, with that fraction
    of the stained pixels: which one says whether the stain (eosin's red) or the whole
    exposure saturated."""
    pixels = rgb[_stained(*_channel_range(rgb), tissue)]
    if pixels.size == 0:
        return "none", 0.0
    counts = {
        f"{name} at {end}": int((pixels[:, channel] == end).sum())
        for end in (255, 0)
        for channel, name in enumerate(CHANNELS)
    }
    worst = max(counts, key=counts.__getitem__)
    return worst, counts[worst] / len(pixels)


#: The share of the pixels whose grey level :func:`dark_level` reports: H&E nuclei fill more
#: than 1 % of any tissue field, so in a well-exposed image this level lies among them.
DARK_SHARE = 0.01


def dark_level(gray: np.ndarray) -> int:
    """Grey level at or below which the darkest :data:`DARK_SHARE` of the pixels lie.

    Over-exposure lifts every tone, haematoxylin's dark nuclei included, so a washed-out image
    has no dark end even where nothing clips; glass beside tissue leaves the level where the
    tissue's nuclei put it.
    """
    cumulative = np.cumsum(np.bincount(gray.ravel(), minlength=256))
    return int(np.searchsorted(cumulative, DARK_SHARE * gray.size))


def pen_mask(rgb: np.ndarray, config: QCConfig = QCConfig()) -> np.ndarray:
    """Pixels that look like marker ink: saturated green/blue hues, or near black."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # OpenCV hue is degrees / 2
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    blue_green = (hue >= 35) & (hue <= 115) & (sat >= config.pen_min_saturation) & (val >= 40)
    return blue_green | (val < config.pen_max_value)


def assess_quality(image: Any, config: QCConfig = QCConfig()) -> QCResult:
    """Score one image and decide whether it is fit for classification.

    Args:
        image: RGB image (uint8 H×W×3; other layouts are converted like io.to_rgb_uint8).
        config: thresholds.
    """
    rgb = _as_rgb(image)
    gray = _gray(rgb)
    tissue_pixels = _tissue(gray, config.background_threshold)
    blur = blur_score(gray, tissue_pixels)
    tissue = float(tissue_pixels.mean())
    pen = float(pen_mask(rgb, config).mean())
    saturation = clipped_fraction(rgb, tissue_pixels)
    dark = dark_level(gray)
    failed = [*_blur_reasons(blur, config)]
    if tissue < config.min_tissue_fraction:
        why = f"little tissue ({tissue:.0%} < {config.min_tissue_fraction:.0%})"
        failed.append(("tissue", why))
    if pen > config.max_pen_fraction:
        failed.append(("pen", f"pen marks ({pen:.1%} > {config.max_pen_fraction:.0%})"))
    if saturation > config.max_saturation_fraction:
        channel, share = most_clipped_channel(rgb, tissue_pixels)
        why = (
            f"over/under-exposed ({saturation:.1%} of stained pixels clipped"
            f" > {config.max_saturation_fraction:.0%}; most: {channel} in {share:.1%})"
        )
        failed.append(("exposure", why))
    if config.washed_out_level <= dark < config.background_threshold:
        why = (
            f"over-exposed (washed out: the darkest {DARK_SHARE:.0%} of pixels are grey {dark}"
            f" ≥ {config.washed_out_level}; well-exposed nuclei are darker)"
        )
        failed.append(("exposure", why))
    return QCResult(
        blur_score=blur,
        tissue_fraction=tissue,
        pen_fraction=pen,
        saturation_fraction=saturation,
        dark_level=dark,
        passed=not failed,
        reasons=tuple(reason for _, reason in failed),
        checks=tuple(check for check, _ in failed),
    )


def _blur_reasons(blur: float | None, config: QCConfig) -> list[tuple[str, str]]:
    """The blur check's (check, reason), if failed; a threshold of 0 turns the check off."""
    if config.blur_threshold <= 0:
        return []
    if blur is None:
        why = f"blur not measured (under {MIN_BLUR_PIXELS} px of tissue clear of glass)"
        return [("blur_unmeasured", why)]
    if blur < config.blur_threshold:
        return [("blur", f"blurry (laplacian variance {blur:.1f} < {config.blur_threshold:g})")]
    return []
