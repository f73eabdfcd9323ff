"""The tifffile backend of ``SlideSource``: generic tiled TIFF, Aperio SVS, OME-TIFF pyramids.

tifffile decodes these natively through zarr views of the tiles (faster than OpenSlide,
see ``benchmarks/slide_io.py``). The tile tables are checked against the declared size
and the file length at open time, so a truncated or inconsistent file fails before any
layer is made.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.colour_depth import full_scale, region_to_rgb, tiff_bits
from napari_pathreview.io.frames import MultiFrameError, frame_count
from napari_pathreview.io.slide_source import BACKGROUND, SlideSource, check_level_shapes
from napari_pathreview.io.tiff_axes import check_axes, yxs_layout
from napari_pathreview.io.tiff_physical import tiff_um_per_px
from napari_pathreview.io.tiff_tiles import TileCache, TileReader, direct_readable

logger = logging.getLogger(__name__)

_APP_MAG = re.compile(r"AppMag\s*=\s*([0-9.]+)")
ASSOCIATED_KINDS = ("label", "macro", "thumbnail")


def _objective_power(tif: Any) -> float | None:
    match = _APP_MAG.search(tif.pages[0].description or "")
    return float(match.group(1)) if match else None


def _check_tile_table(path: Path, page: Any, file_size: int) -> None:
    """A page's tile/strip table must cover its declared size and stay inside the file."""
    height, width = page.imagelength, page.imagewidth
    planes = page.samplesperpixel if page.planarconfig == 2 else 1
    if page.is_tiled:
        expected = math.ceil(height / page.tilelength) * math.ceil(width / page.tilewidth)
    else:
        expected = math.ceil(height / max(1, page.rowsperstrip or height))
    expected *= planes * max(1, page.imagedepth)
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) < expected or len(counts) < expected:
        raise ImageReadError(
            f"{path}: the tile table of a {height}×{width} level lists {len(offsets)} tiles, "
            f"{expected} are needed; the file is damaged"
        )
    ends = np.asarray(offsets, dtype=np.int64) + np.asarray(counts, dtype=np.int64)
    if ends.size and int(ends.max()) > file_size:
        raise ImageReadError(
            f"{path}: a tile runs past the end of the file ({int(ends.max())} > {file_size} "
            "bytes); the file is truncated"
        )


class _DemoteToDebug(logging.Filter):
    """Passes tifffile's records on at DEBUG (under this module's logger) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger.debug("tifffile: %s", record.getMessage())
        return False


def tiff_series(tif: Any) -> list[Any]:
    """``tif.series``, with tifffile's own log lines about a damaged file demoted to debug.

    Parsing a truncated or corrupt file makes tifffile log several ERROR/WARNING lines of its
    internals; the caller reports the problem once, as an ImageReadError naming the file.
    """
    tifffile_logger = logging.getLogger("tifffile")
    demote = _DemoteToDebug()
    tifffile_logger.addFilter(demote)
    try:
        return tif.series
    finally:
        tifffile_logger.removeFilter(demote)


def check_tiff_structure(path: Path, tif: Any) -> None:
    """Validate a TIFF's first series before any pixel is decoded.

    Its axes must be a readable layout (:func:`.tiff_axes.check_axes`), every level's tile
    table must cover its size and stay inside the file, and reduced
    levels stored as SubIFDs must share level 0's aspect ratio (tifffile silently drops
    SubIFDs that do not fit, which would hide a broken pyramid).

    Raises:
        ImageReadError: Naming the file and what is wrong.
    """
    series = tif.series[0]
    check_axes(path, series.axes, series.shape)
    size = path.stat().st_size
    for level in series.levels:
        _check_tile_table(path, level.keyframe, size)
    first = series.levels[0].keyframe
    subifds = getattr(first, "subifds", None) or ()
    if len(subifds) + 1 > len(series.levels):
        shapes = [(first.imagelength, first.imagewidth)]
        for index in range(len(subifds)):
            page = tif.pages[0].pages[index] if hasattr(tif.pages[0], "pages") else None
            if page is not None:
                shapes.append((page.imagelength, page.imagewidth))
        check_level_shapes(path, shapes)
        logger.warning(
            "%s: tifffile skipped %d reduced level(s)", path, len(shapes) - len(series.levels)
        )


def _tile_shape(page: Any) -> tuple[int, int]:
    """The (height, width) a page is stored in: its tiles, or its strips."""
    if page.is_tiled:
        return int(page.tilelength), int(page.tilewidth)
    return int(min(page.rowsperstrip or page.imagelength, page.imagelength)), int(page.imagewidth)


class TiffSlide(SlideSource):
    """A pyramidal TIFF read through tifffile, tiles decoded on demand.

    A stack of frames is refused (``io.frames.MultiFrameError``): a slide is one plane, and
    tiling its first frame would answer for a frame nobody chose.

    The common layout (one tiled, contiguous page per level) is read tile by tile
    directly (:mod:`.tiff_tiles`); other layouts go through tifffile's zarr store, opened
    only when such a level is first read (importing zarr costs a second).
    """

    backend = "tifffile"

    def __init__(self, path: str | Path) -> None:
        import tifffile

        path = Path(path)
        try:
            tif = tifffile.TiffFile(path)
        except Exception as error:  # tifffile raises many kinds on non-TIFF input
            raise ImageReadError(f"{path}: not a readable TIFF ({error})") from error
        self._tif = tif
        try:
            if not tiff_series(tif):
                raise ImageReadError(f"{path}: the TIFF holds no image")
            series = tif.series[0]
            check_tiff_structure(path, tif)
            if frame_count(series) > 1:  # a slide reads one plane: never page 1 unasked
                raise MultiFrameError(path, frame_count(series))
            self._series = series
            self._bits = tiff_bits(tif)  # one depth for every tile: they convert alike
            self._arrays: list[Any] | None = None
            self._axes = series.axes
            self._index, self._order = yxs_layout(series.axes, series.shape, frames=False)
            shapes = [self._yx(level.shape) for level in series.levels]
            tiles = [_tile_shape(level.keyframe) for level in series.levels]
            self._readers = self._tile_readers(tif, series)
            super().__init__(
                path,
                shapes,
                um_per_px=tiff_um_per_px(tif),
                objective_power=_objective_power(tif),
                level_tiles=tiles,
                properties={"tiff.ImageDescription": (tif.pages[0].description or "")[:2000]},
            )
        except ImageReadError:
            tif.close()
            raise
        except Exception as error:
            tif.close()
            raise ImageReadError(
                f"{path}: cannot open TIFF ({type(error).__name__}: {error})"
            ) from error
        self._associated_pages = self._find_associated()

    def _yx(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return int(shape[self._axes.index("Y")]), int(shape[self._axes.index("X")])

    def _zarr_levels(self) -> list[Any]:
        """tifffile's zarr view of every level, opened on first use."""
        with self._lock:
            if self._arrays is None:
                import zarr

                fill = self._fill(self._series.keyframe)
                root = zarr.open(self._series.aszarr(fillvalue=fill), mode="r")
                count = len(self._series.levels)
                self._arrays = [root[str(i)] for i in range(count)] if count > 1 else [root]
        return self._arrays

    def _tile_readers(self, tif: Any, series: Any) -> list[TileReader | None]:
        """Direct tile readers for levels in the common layout; None falls back to zarr."""
        cache = TileCache()
        readers: list[TileReader | None] = []
        for level, pages in enumerate(series.levels):
            page = pages.keyframe
            usable = len(pages.pages) == 1 and direct_readable(page, series.axes)
            reader = TileReader(tif, page, level, cache, self._fill(page)) if usable else None
            readers.append(reader)
        return readers

    def _fill(self, page: Any) -> int:
        """White glass in ``page``'s samples at the slide's depth: a missing tile reads as
        :data:`.slide_source.BACKGROUND` once converted."""
        if page.dtype == np.uint8:
            return BACKGROUND
        return round(BACKGROUND * full_scale(self._bits) / 255)

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        reader = self._readers[level]
        if reader is not None:
            return region_to_rgb(reader.read(y, x, h, w), self._bits)
        index = list(self._index)
        index[self._axes.index("Y")] = slice(y, y + h)
        index[self._axes.index("X")] = slice(x, x + w)
        region = np.asarray(self._zarr_levels()[level][tuple(index)]).transpose(self._order)
        return region_to_rgb(region, self._bits)

    def _find_associated(self) -> dict[str, int]:
        """Aperio keeps label and macro as extra pages named in their description: kind →
        series index."""
        pages: dict[str, int] = {}
        for number, series in enumerate(self._tif.series[1:], start=1):
            name = (series.name or "").lower()
            for kind in ASSOCIATED_KINDS:
                if kind in name and kind not in pages:
                    pages[kind] = number
        return pages

    def _associated_names(self) -> list[str]:
        return list(self._associated_pages)

    def _read_associated(self, name: str) -> np.ndarray:
        number = self._associated_pages[name]
        series = self._tif.series[number]
        index, order = yxs_layout(series.axes, series.shape, frames=False)
        region = np.asarray(series.asarray())[tuple(index)].transpose(order)
        return region_to_rgb(region, tiff_bits(self._tif, number))

    def _close(self) -> None:
        self._tif.close()
