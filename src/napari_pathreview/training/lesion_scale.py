"""How far a lesion run resamples each stored image: its own pixel size over the training one.

Each image's pixel size is the reader's (``io._core.level0_um_per_px``, by the one order of
``io._core.file_scale``: the size the file states, else the size its dataset documents for its
name at its width), so a 256² mini-MIAS copy (0.8 mm) and its 1024² film (0.2 mm) reach
``lesion.pixel_size`` alike, as ``predict`` reads them for the registered model. An image whose
size the reader does not know takes ``lesion.source_pixel_size``; without one it is refused,
named, never trained at a guessed size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_pathreview.training.patches import PatchError
from napari_pathreview.training.recipe import Recipe

UNIT_UM = {"mm": 1000.0, "um": 1.0}
"""Micrometres per unit of ``lesion.pixel_size`` (``lesion.pixel_unit``)."""


def training_pixel_size(recipe: Recipe) -> float | None:
    """lesion.pixel_size, else data.pixel_size where the recipe has one, else None (native)."""
    return recipe.lesion.pixel_size or getattr(recipe.data, "pixel_size", None) or None


@dataclass(frozen=True)
class Resampling:
    """A lesion run's rule from a stored image to its training pixels.

    Attributes:
        target: The training pixel size (``unit``); None trains each image in its own pixels.
        unit: ``lesion.pixel_unit``: mm (mammograms) or um (histology).
        fallback: ``lesion.source_pixel_size``: the size of images the reader cannot size
            (0: none, such images are refused).
    """

    target: float | None
    unit: str = "mm"
    fallback: float = 0.0

    def stored_size(self, loaded: Any) -> float | None:
        """The pixel size (``unit``) of ``loaded`` (an ``io.LoadedImage``) by the reader's rule,
        else the fallback; None when neither gives one."""
        from napari_pathreview.io._core import level0_um_per_px

        um = level0_um_per_px(loaded)
        return um / UNIT_UM[self.unit] if um else (self.fallback or None)

    def scale(self, loaded: Any, where: str) -> float:
        """Training pixels per level-0 pixel of ``loaded``.

        Raises:
            PatchError: The image's pixel size is unknown and the run resamples, naming it.
        """
        if not self.target:
            return 1.0
        size = self.stored_size(loaded)
        if size is None:
            shape = "×".join(str(n) for n in loaded.levels[0].shape[1::-1])
            raise PatchError(
                f"{where}: a {shape} px image whose pixel size is unknown (the file states none "
                "and its name documents none at this size), but lesion.pixel_size="
                f"{self.target} {self.unit} resamples to it; use files that state it (DICOM "
                "PixelSpacing, TIFF resolution, slides), whole BreaKHis or mini-MIAS images, "
                "or set lesion.source_pixel_size for images that give none"
            )
        return size / self.target


def resampling_of(recipe: Recipe) -> Resampling:
    """The recipe's :class:`Resampling`: ``lesion.pixel_size`` (or ``data.pixel_size``) from
    each image's own size, ``lesion.source_pixel_size`` for images of unknown size."""
    cfg = recipe.lesion
    return Resampling(training_pixel_size(recipe), cfg.pixel_unit, cfg.source_pixel_size)
