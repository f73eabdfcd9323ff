"""Image quality control: blur, tissue fraction, pen marks and over-exposure.

Defaults follow seed 001 (Laplacian variance < 75 is blurry; under 40 % of pixels darker than
220 is too little tissue). Pen marks are strongly
saturated green-to-blue pixels (hue 70°-230°, short of haematoxylin's blue-purple) or near-black
ones, which H&E does not produce; over-exposure is the fraction of clipped pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from napari_pathreview.errors import SettingError
from napari_pathreview.setting_rules import FINITE_NON_NEGATIVE, Rule, check_settings, within


class QCConfigError(SettingError):
    """A ``QCConfig`` threshold out of range; ``field`` lets a caller call it its own name."""

    def __init__(self, field: str, requirement: str, value: object) -> None:
        super().__init__(field, requirement, value, name=f"QCConfig.{field}")


#: each threshold's valid range and how an error states it
_RANGES: dict[str, Rule] = {
    "blur_threshold": FINITE_NON_NEGATIVE,
    "background_threshold": within(0, 256),
    "min_tissue_fraction": within(0.0, 1.0),
    "max_pen_fraction": within(0.0, 1.0),
    "max_saturation_fraction": within(0.0, 1.0),
    "pen_min_saturation": within(0, 256),
    "pen_max_value": within(0, 256),
}


@dataclass(frozen=True)
class QCConfig:
    """Thresholds of :func:`assess_quality`.

    Attributes:
        blur_threshold: Laplacian variance below which an image is blurry.
        background_threshold: grayscale level at or above which a pixel is background.
        min_tissue_fraction: least fraction of tissue pixels.
        max_pen_fraction: most fraction of pen-ink pixels.
        max_saturation_fraction: most fraction of clipped pixels (pure white, 255 in every
            channel, or 0 in any channel) among all pixels, i.e. over- or under-exposure; blank
            glass a scanner writes as pure white counts as clipped.
        pen_min_saturation: HSV saturation (0-255) that makes a blue/green pixel ink.
        pen_max_value: HSV value (0-255) below which a pixel counts as black ink.
    """

    blur_threshold: float = 75.0
    background_threshold: int = 220
    min_tissue_fraction: float = 0.40
    max_pen_fraction: float = 0.05
    max_saturation_fraction: float = 0.25
    pen_min_saturation: int = 100
    pen_max_value: int = 30

    def __post_init__(self) -> None:
        check_settings(self, _RANGES, error=QCConfigError)


@dataclass(frozen=True)
class QCResult:
    """Scores of one image and the verdict; ``reasons`` names each failed check."""

    blur_score: float
    tissue_fraction: float
    pen_fraction: float
    saturation_fraction: float
    passed: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (reasons joined by ';') for CSV rows and JSON."""
        row = asdict(self)
        row["reasons"] = ";".join(self.reasons)
        return row


def _as_rgb(image: Any) -> np.ndarray:
    from napari_pathreview.stain.base import to_rgb_uint8

    return to_rgb_uint8(image)


def tissue_mask(image: Any, background_threshold: int = 220) -> np.ndarray:
    """Boolean H×W mask of tissue: grayscale below ``background_threshold`` (seed 001's rule)."""
    rgb = _as_rgb(image)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < background_threshold


def blur_score(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a uint8 grayscale image (higher is sharper)."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


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
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    total = float(gray.size)
    blur = blur_score(gray)
    tissue = float((gray < config.background_threshold).sum()) / total
    pen = float(pen_mask(rgb, config).sum()) / total
    clipped = ((rgb == 255).all(axis=2) | (rgb == 0).any(axis=2)).sum() / total
    saturation = float(clipped)
    reasons = []
    if blur < config.blur_threshold:
        reasons.append(f"blurry (laplacian variance {blur:.1f} < {config.blur_threshold:g})")
    if tissue < config.min_tissue_fraction:
        reasons.append(f"little tissue ({tissue:.0%} < {config.min_tissue_fraction:.0%})")
    if pen > config.max_pen_fraction:
        reasons.append(f"pen marks ({pen:.1%} > {config.max_pen_fraction:.0%})")
    if saturation > config.max_saturation_fraction:
        reasons.append(
            f"over/under-exposed ({saturation:.1%} clipped > {config.max_saturation_fraction:.0%})"
        )
    return QCResult(
        blur_score=blur,
        tissue_fraction=tissue,
        pen_fraction=pen,
        saturation_fraction=saturation,
        passed=not reasons,
        reasons=tuple(reasons),
    )
