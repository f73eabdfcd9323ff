"""Anything that holds a slide, as a ``SlideSource``: a path, an open source, or layer levels.

The slide engine reads regions through one contract (``io.slide_source.SlideSource``). A file
is opened with ``io.wsi.open_slide``; the levels of a napari image layer (numpy, dask or zarr
arrays, largest first) are wrapped in :class:`LevelsSlide`, so the widget runs the same
engine on what the viewer shows without reopening the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.io.slide_source import SlideSource

__all__ = ["LevelsSlide", "as_slide"]


class LevelsSlide(SlideSource):
    """Pyramid levels already in memory (or lazy: dask/zarr) as a slide.

    Args:
        levels: Arrays H×W×3 (or H×W grey), largest first.
        um_per_px: Level-0 pixel size, when known (a layer's µm scale).
        path: Where they came from, for messages and the fingerprint.
    """

    backend = "memory"

    def __init__(
        self,
        levels: Sequence[Any],
        um_per_px: float | None = None,
        path: str | Path | None = None,
    ) -> None:
        self._levels = list(levels)
        shapes = [tuple(int(v) for v in level.shape[:2]) for level in self._levels]
        super().__init__(Path(path or "<layer>"), shapes, um_per_px=um_per_px)
        self._has_file = path is not None and Path(path).is_file()

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        from napari_pathreview.io import to_rgb_uint8

        return to_rgb_uint8(np.asarray(self._levels[level][y : y + h, x : x + w]))

    @property
    def fingerprint(self) -> str:
        """The file's fingerprint, else a hash of the shapes and the coarsest level's pixels."""
        if self._has_file:
            return super().fingerprint
        if self._fingerprint is None:
            digest = hashlib.sha256(repr(self.level_shapes).encode())
            height, width = self.level_shapes[-1]
            coarsest = self.read_region(self.level_count - 1, 0, 0, height, width)
            digest.update(np.ascontiguousarray(coarsest).tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def as_slide(item: Any, um_per_px: float | None = None) -> SlideSource:
    """A ``SlideSource`` for a path, a source, a ``LoadedImage``, a level list or an array.

    Args:
        item: What to read.
        um_per_px: Level-0 pixel size to use when the item does not state one (or to
            override a file's).

    Raises:
        ImageReadError: a path that cannot be opened (from ``io.wsi.open_slide``).
    """
    if isinstance(item, SlideSource):
        if um_per_px:
            item.um_per_px = float(um_per_px)
        return item
    if isinstance(item, str | Path):
        from napari_pathreview.io.wsi import open_slide

        return open_slide(item, um_per_px=um_per_px)
    if hasattr(item, "levels") and hasattr(item, "modality"):
        stated = getattr(item, "um_per_px", None) or (item.metadata or {}).get("microns_per_pixel")
        return LevelsSlide(item.levels, um_per_px or stated, getattr(item, "path", None))
    levels = list(item) if isinstance(item, list | tuple) else [item]
    return LevelsSlide(levels, um_per_px)
