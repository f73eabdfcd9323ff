"""``open_slide(path) -> SlideSource``: one entry point to every whole-slide format.

Which library reads what (``benchmarks/slide_io.py`` measured the choice):

- tifffile (zarr views of the tiles): generic tiled TIFF, Aperio SVS, OME-TIFF — it
  reads them natively and faster than OpenSlide;
- OpenSlide (openslide-python + openslide-bin): Hamamatsu NDPI/VMS/VMU, 3DHISTECH MRXS,
  Leica SCN, Ventana BIF, Philips TIFF, Sakura SVSLIDE, and any TIFF tifffile cannot read;
- wsidicom: DICOM WSI (a folder, or any one instance of the series);
- plain images (PNG, JPEG, a single-frame DICOM…) become a one-level in-memory slide, so
  tiled code paths treat a BreaKHis patch and a slide alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io._core import (
    DICOM_SUFFIXES,
    HISTOLOGY,
    OPENSLIDE_SUFFIXES,
    RASTER_SUFFIXES,
    TIFF_SUFFIXES,
    check_pixel_size,
    has_dicom_preamble,
    to_rgb_uint8,
)
from napari_pathreview.io.dicom_slide import DicomSlide, is_dicom_wsi
from napari_pathreview.io.frames import MultiFrameError
from napari_pathreview.io.mammograms import load_dicom
from napari_pathreview.io.openslide_slide import OpenSlideSource
from napari_pathreview.io.raster import load_raster
from napari_pathreview.io.slide_source import SlideSource
from napari_pathreview.io.tiff_slide import TiffSlide, tiff_series

logger = logging.getLogger(__name__)

__all__ = ["ArraySlide", "SlideSource", "open_slide", "slide_backend"]

CHECK_EDGE = 2048
"""Edge of the region of the smallest level decoded at open time to validate the file."""


class ArraySlide(SlideSource):
    """A decoded image in memory as a one-level slide (BreaKHis patches, PNGs, …)."""

    backend = "memory"

    def __init__(self, path: Path, image: np.ndarray, um_per_px: float | None = None) -> None:
        self._image = to_rgb_uint8(image)
        super().__init__(path, [self._image.shape[:2]], um_per_px=um_per_px)

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self._image[y : y + h, x : x + w].copy()


def _prefers_openslide(path: Path) -> bool:
    """TIFF flavours OpenSlide handles and tifffile does not read as one plain pyramid."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            vendor = tif.is_philips or tif.is_ndpi or tif.is_scn or tif.is_bif
            if vendor or not tiff_series(tif):
                return True
            page = tif.series[0].levels[0].keyframe
            return page.compression not in tifffile.TIFF.DECOMPRESSORS
    except Exception:  # not a TIFF tifffile parses: let OpenSlide try (it reports clearly)
        return True


def slide_backend(path: str | Path) -> str:
    """The library ``open_slide`` picks: "tifffile", "openslide", "wsidicom" or "memory"."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in DICOM_SUFFIXES or (path.is_file() and has_dicom_preamble(path)):
        return "wsidicom" if path.is_dir() or is_dicom_wsi(path) else "memory"
    if suffix in TIFF_SUFFIXES:
        return "openslide" if _prefers_openslide(path) else "tifffile"
    if suffix in OPENSLIDE_SUFFIXES:
        return "openslide"
    if suffix in RASTER_SUFFIXES:
        return "memory"
    raise ImageReadError(f"{path}: not a slide or image format this plugin reads ({suffix})")


def open_slide(
    path: str | Path, *, backend: str | None = None, um_per_px: float | None = None
) -> SlideSource:
    """Open a whole-slide image (or a plain image as a one-level slide).

    Args:
        path: A slide file, a DICOM WSI folder or any one instance of its series.
        backend: Force "tifffile", "openslide" or "wsidicom" (benchmarks, comparisons).
        um_per_px: The level-0 pixel size when the file does not state it (or states it
            wrongly); it replaces the file's value.

    Raises:
        ImageReadError: Missing, damaged, unsupported or inconsistent; the message names
            the file.
    """
    path = Path(path)
    if um_per_px is not None:
        um_per_px = check_pixel_size(um_per_px, path)  # 0 or NaN is refused, not ignored
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")
    chosen = backend or slide_backend(path)
    if chosen == "tifffile":
        source: SlideSource = TiffSlide(path)
    elif chosen == "openslide":
        source = OpenSlideSource(path)
    elif chosen == "wsidicom":
        source = DicomSlide(path)
    elif chosen == "memory":
        source = _memory_slide(path)
    else:
        raise ImageReadError(f"{path}: unknown slide backend {chosen!r}")
    if chosen != "memory":
        _check_decodes(source)
    if um_per_px is not None:
        if source.um_per_px and abs(source.um_per_px - um_per_px) > 1e-9:
            logger.warning(
                "%s: pixel size %.4g µm given replaces %.4g µm from the file",
                path,
                um_per_px,
                source.um_per_px,
            )
        source.um_per_px = float(um_per_px)
    logger.debug("opened %r with %s", source, chosen)
    return source


def _check_decodes(source: SlideSource) -> None:
    """Decode the smallest level (napari shows it first) and the last tile of every level.

    A file with corrupt tiles, or cut short (the last tiles are the first lost), fails
    here, before a layer exists, instead of on every pan. At most ``CHECK_EDGE``² pixels
    of the smallest level plus one tile per level are read.
    """
    try:
        height, width = source.level_shapes[-1]
        last = source.level_count - 1
        source.read_region(last, 0, 0, min(height, CHECK_EDGE), min(width, CHECK_EDGE))
        for level, (height, width) in enumerate(source.level_shapes):
            tile_h, tile_w = (
                min(t, e) for t, e in zip(source.level_tiles[level], (height, width), strict=True)
            )
            source.read_region(level, height - tile_h, width - tile_w, tile_h, tile_w)
    except ImageReadError:
        source.close()
        raise


def _memory_slide(path: Path) -> ArraySlide:
    """A plain image as a one-level slide; a stack of frames is refused (a slide is one
    plane, and its first frame is no frame anybody chose)."""
    loaded = load_raster(path) if path.suffix.lower() in RASTER_SUFFIXES else load_dicom(path)
    if loaded.frames > 1:
        raise MultiFrameError(path, loaded.frames)
    if loaded.modality != HISTOLOGY:
        logger.info("%s: a %s opened as a one-level RGB slide", path, loaded.modality)
    return ArraySlide(path, np.asarray(loaded.data), loaded.um_per_px)
