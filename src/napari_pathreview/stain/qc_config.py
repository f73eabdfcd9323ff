"""The thresholds of image quality control (:class:`QCConfig`), apart from the checks.

Kept free of OpenCV so a model card, which records the thresholds its model was trained under,
can validate them without importing the image code (``stain.qc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

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
    "washed_out_level": within(0, 256),
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
        max_saturation_fraction: most fraction of stained pixels with a clipped channel
            (255: over-exposed stain; 0: under-exposed); glass, pure white or not, never
            counts (:func:`clipped_fraction`).
        washed_out_level: grey level (0-255) at or above which the darkest 1 % of the pixels
            call an image washed out (over-exposed without clipping): H&E nuclei are darker in
            any well-exposed scan (the palest BreaKHis image in shared data: 157). Judged only
            on an image with tissue (its darkest 1 % darker than ``background_threshold``), so
            a level at or above that turns the check off.
        pen_min_saturation: HSV saturation (0-255) that makes a blue/green pixel ink.
        pen_max_value: HSV value (0-255) below which a pixel counts as black ink.
    """

    blur_threshold: float = 75.0
    background_threshold: int = 220
    min_tissue_fraction: float = 0.40
    max_pen_fraction: float = 0.05
    max_saturation_fraction: float = 0.25
    washed_out_level: int = 175
    pen_min_saturation: int = 100
    pen_max_value: int = 30

    def __post_init__(self) -> None:
        check_settings(self, _RANGES, error=QCConfigError)

    def to_dict(self) -> dict[str, Any]:
        """Every threshold by name (a model card's ``qc`` field)."""
        return asdict(self)


#: A training recipe's ``data.qc_*`` key → the threshold it sets; the others keep the defaults.
RECIPE_KEYS: dict[str, str] = {
    "qc_blur_threshold": "blur_threshold",
    "qc_tissue_fraction": "min_tissue_fraction",
}


def recipe_qc_config(data: Mapping[str, Any]) -> QCConfig:
    """The ``QCConfig`` a recipe's ``data`` section (as a dict) asks for."""
    chosen = {field: data[key] for key, field in RECIPE_KEYS.items() if data.get(key) is not None}
    return QCConfig(**chosen)
