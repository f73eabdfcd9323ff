"""The OpenSlide backend of ``SlideSource``: NDPI, MRXS, SCN, BIF, VMS, Philips TIFF, …

openslide-python with the native library from the ``openslide-bin`` wheel, so a plain
``pip install`` is enough on Linux, macOS and Windows. OpenSlide returns RGBA
(transparent outside scanned areas); regions are composited on white (:mod:`.alpha`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.alpha import over_glass
from napari_pathreview.io.slide_source import SlideSource

logger = logging.getLogger(__name__)


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """OpenSlide's RGBA (premultiplied ARGB in the library, straight once openslide-python
    has converted it) → RGB uint8 on white glass, by the rule every read follows
    (:func:`.alpha.over_glass`): unscanned areas, (0, 0, 0, 0), are white."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    return over_glass(rgba[..., :3], alpha)


def _float_property(properties: Any, key: str) -> float | None:
    try:
        return float(properties[key])
    except (KeyError, ValueError, TypeError):
        return None


def _check_mrxs(path: Path) -> None:
    """A MIRAX slide is the .mrxs file plus the folder of the same name beside it."""
    if path.suffix.lower() == ".mrxs" and not path.with_suffix("").is_dir():
        raise ImageReadError(
            f"{path}: a MIRAX slide needs its data folder {path.with_suffix('').name}/ "
            "(Slidedat.ini and the Data*.dat files) beside the .mrxs file; copy the folder too"
        )


class OpenSlideSource(SlideSource):
    """Any slide OpenSlide opens, read through ``OpenSlide.read_region``."""

    backend = "openslide"

    def __init__(self, path: str | Path) -> None:
        import openslide

        path = Path(path)
        _check_mrxs(path)
        try:
            slide = openslide.OpenSlide(path)
        except openslide.OpenSlideUnsupportedFormatError as error:
            raise ImageReadError(f"{path}: not a slide format OpenSlide reads ({error})") from error
        except (openslide.OpenSlideError, OSError) as error:
            raise ImageReadError(f"{path}: OpenSlide cannot open it ({error})") from error
        self._slide = slide
        props = slide.properties
        mpp_x = _float_property(props, openslide.PROPERTY_NAME_MPP_X)
        mpp_y = _float_property(props, openslide.PROPERTY_NAME_MPP_Y)
        tiles = [
            (
                int(props.get(f"openslide.level[{i}].tile-height", 256)),
                int(props.get(f"openslide.level[{i}].tile-width", 256)),
            )
            for i in range(slide.level_count)
        ]
        try:
            super().__init__(
                path,
                [(h, w) for w, h in slide.level_dimensions],
                um_per_px=(mpp_x + mpp_y) / 2 if mpp_x and mpp_y else mpp_x or mpp_y,
                objective_power=_float_property(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
                level_downsamples=slide.level_downsamples,
                level_tiles=tiles,
                properties=dict(props),
            )
        except ImageReadError:
            slide.close()
            raise
        self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR, "")

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        import openslide

        factor = self.level_downsamples[level]
        location = (round(x * factor), round(y * factor))
        try:
            image = self._slide.read_region(location, level, (w, h))
        except openslide.OpenSlideError as error:
            raise ImageReadError(
                f"{self.path}: OpenSlide cannot read level {level} at (y={y}, x={x}) "
                f"({error}); the file is damaged"
            ) from error
        return rgba_to_rgb(np.asarray(image))

    def _associated_names(self) -> list[str]:
        return list(self._slide.associated_images)

    def _read_associated(self, name: str) -> np.ndarray:
        return rgba_to_rgb(np.asarray(self._slide.associated_images[name].convert("RGBA")))

    def _fingerprint_files(self) -> list[Path]:
        folder = self.path.with_suffix("")
        if self.path.suffix.lower() == ".mrxs" and (folder / "Slidedat.ini").is_file():
            return [self.path, folder / "Slidedat.ini"]
        return [self.path]

    def _close(self) -> None:
        self._slide.close()
