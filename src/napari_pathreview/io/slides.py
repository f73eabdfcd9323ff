"""Whole slides and TIFFs as ``LoadedImage``: small files at once, pyramids lazily.

A whole-slide image can be larger than memory, so its levels are dask arrays over the
file's tiles (tifffile's zarr view, OpenSlide or wsidicom regions, see :mod:`.wsi`):
napari asks for the tiles it draws and nothing else is read. Level 0 is never
materialised here. Grayscale TIFFs (mammograms) keep their bit depth.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io._core import (
    HISTOLOGY,
    MAMMOGRAM,
    LoadedImage,
    base_metadata,
    file_scale,
    finish_loaded,
    finish_stack,
    modality_of,
)
from napari_pathreview.io.colour_depth import region_to_rgb, tiff_bits
from napari_pathreview.io.frames import frame_count
from napari_pathreview.io.slide_source import SlideSource
from napari_pathreview.io.tiff_axes import axis_roles, check_axes, pixel_shape, yxs_layout
from napari_pathreview.io.tiff_physical import tiff_frame_step_um, tiff_um_per_px
from napari_pathreview.io.tiff_slide import check_tiff_structure, tiff_series
from napari_pathreview.io.wsi import open_slide

logger = logging.getLogger(__name__)

EAGER_MAX_BYTES = 256 * 2**20
"""Single-level TIFFs up to this size are decoded whole; larger ones stay lazy."""

VIRTUAL_LEVEL_EDGE = 4096
"""A lazy single-level image wider than this gets strided overview levels."""

GREY_CHECK_EDGE = 2048
"""The grey-in-colour check of a lazy colour TIFF reads at most this centre window of its
smallest level (a pyramid's smallest level is usually whole within it)."""


def _to_yxs(level: Any, axes: str, frames: bool = False) -> Any:
    """Reorder a lazy level to Y×X or Y×X×S by its axes' roles (:mod:`.tiff_axes`), taking
    the first plane of the frame axes.

    With ``frames`` the frame axes are kept instead, merged into one leading axis:
    F×Y×X(×S), F = 1 when the file has no such axis.
    """
    import dask.array as da

    # the zarr array's chunks are the file's tiles: dask must keep them, not rechunk ("auto")
    array = (
        da.from_array(level, chunks=level.chunks) if hasattr(level, "chunks") else da.asarray(level)
    )
    index, order = yxs_layout(axes, array.shape, frames)
    array = array[tuple(index)].transpose(order)
    if not frames:
        return array
    planes = 3 if "S" in axis_roles(axes, level.shape) else 2
    return array.reshape((-1, *array.shape[array.ndim - planes :]))


def _virtual_levels(level0: Any, stacked: bool = False) -> list[Any]:
    """Strided overviews of a big single-level image, so napari never asks for all of level 0.

    Each overview is computed tile by tile (a tile is read, subsampled and dropped), so
    memory stays bounded; it is slower than a real pyramid, which the message suggests.
    """
    logger.info(
        "no pyramid in this file: overviews are computed from full-resolution tiles; "
        "write a pyramidal TIFF (io.pyramid.write_pyramidal_tiff) for fast browsing"
    )
    levels = [level0]
    plane = slice(1, 3) if stacked else slice(0, 2)  # a stack's frames are never strided
    while max(levels[-1].shape[plane]) > VIRTUAL_LEVEL_EDGE // 2:
        levels.append(levels[-1][:, ::2, ::2] if stacked else levels[-1][::2, ::2])
    return levels


def _zarr_levels(series: Any) -> list[Any]:
    """tifffile's zarr view of each level of a series (its chunks are the file's tiles)."""
    import zarr

    root = zarr.open(series.aszarr(), mode="r")
    return [root[str(i)] for i in range(len(series.levels))] if len(series.levels) > 1 else [root]


def _rgb_frames(path: Path, levels: list[Any], dtype: Any, bits: int) -> list[Any]:
    """Colour frame levels (F×Y×X×S, or grey F×Y×X under a BreaKHis name; grey + alpha) as
    RGB uint8, chunk by chunk by the file's stated depth ``bits``, alpha blended onto white
    (:func:`.colour_depth.region_to_rgb`, as a small stack decoded whole converts), so a
    frame is decoded only when it is shown.

    Raises:
        ImageReadError: Pixels that are neither 8- nor 16-bit, which have no per-chunk rule.
    """
    if np.dtype(dtype) not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"{path}: a colour stack this large ({EAGER_MAX_BYTES // 2**20} MiB or more, or "
            f"pyramidal) is read lazily, frame by frame, which needs 8- or 16-bit pixels, not "
            f"{np.dtype(dtype)}; save it as 8-bit RGB, or split it into smaller files"
        )
    if np.dtype(dtype) == np.uint8 and levels[0].ndim == 4 and levels[0].shape[-1] == 3:
        return levels
    converted = []
    for level in levels:
        level = level if level.ndim == 4 else level[..., None]
        level = level.rechunk({3: -1})  # a chunk holds every sample of its pixels
        chunks = (*level.chunks[:3], (3,))
        converted.append(level.map_blocks(region_to_rgb, bits=bits, dtype=np.uint8, chunks=chunks))
    return converted


def _open_lazy(path: Path, tif: Any, histology: bool) -> LoadedImage:
    """A pyramidal or very large TIFF that is not one colour slide, lazy: grey (a mammogram,
    bit depth kept) or a stack of colour frames (histology, RGB uint8).

    Frames come first (napari's slider) and each frame's tiles are read when it is shown; a
    pyramid's levels are each such a stack. A colour file whose channels are equal (a film
    saved as RGB) keeps one channel, as the eager reader does.
    """
    series = tif.series[0]
    levels = [_to_yxs(array, series.axes, frames=True) for array in _zarr_levels(series)]
    if histology:
        levels = _rgb_frames(path, levels, series.dtype, tiff_bits(tif))
    elif levels[0].ndim == 4 and levels[0].shape[-1] == 2:  # grey + alpha: onto white
        levels = [
            level[..., 0] for level in _rgb_frames(path, levels, series.dtype, tiff_bits(tif))
        ]
    elif levels[0].ndim == 4:
        levels = [level[..., 0] for level in levels]  # grey in colour: R = G = B
    frames = int(levels[0].shape[0])
    stacked = frames > 1  # a stack of frames: the viewer scrolls them all
    if not stacked:
        levels = [level[0] for level in levels]
    virtual = len(levels) == 1 and max(levels[0].shape[stacked : stacked + 2]) > VIRTUAL_LEVEL_EDGE
    if virtual:
        levels = _virtual_levels(levels[0], stacked)
    step = tiff_frame_step_um(tif) if stacked else None
    modality = HISTOLOGY if histology else MAMMOGRAM
    shape = levels[0].shape[int(stacked) : int(stacked) + 2]  # a frame's rows and columns
    scale, sizes = file_scale(path, modality, shape, tiff_um_per_px(tif), step)  # µm, grey mm
    metadata = base_metadata(path, modality)
    metadata.update(
        {
            "original_dtype": str(series.dtype),
            "original_shape": list(series.shape),
            "axes": series.axes,
            "levels": [list(level.shape) for level in levels],
            "lazy": True,
            "virtual_levels": virtual,
            **({"frames": frames} if stacked else {}),
            **sizes,
        }
    )
    # No close(): the zarr store reads tiles through the TiffFile's handle.
    return LoadedImage(
        levels[0],
        levels,
        modality,
        metadata,
        scale,
        path,
        um_per_px=sizes.get("um_per_px"),
        frames=frames,
        frame_spacing_mm=sizes.get("frame_spacing_mm"),
    )


def loaded_from_slide(source: SlideSource) -> LoadedImage:
    """A ``LoadedImage`` over an open slide: lazy levels, µm scale, the source attached.

    Levels are dask arrays over the slide's tiles; a big single-level file gets strided
    overviews so napari never asks for all of level 0.
    """
    levels = source.level_arrays()
    virtual = len(levels) == 1 and max(levels[0].shape[:2]) > VIRTUAL_LEVEL_EDGE
    if virtual:
        levels = _virtual_levels(levels[0])
    metadata = base_metadata(source.path, HISTOLOGY)
    metadata.update(
        {
            "backend": source.backend,
            "levels": [list(level.shape) for level in levels],
            "level_downsamples": list(source.level_downsamples),
            "lazy": True,
            "virtual_levels": virtual,
            "associated_images": list(source.associated_images),
            "slide_fingerprint": source.fingerprint,
        }
    )
    vendor = getattr(source, "vendor", "")
    if vendor:
        metadata["vendor"] = vendor
    if source.objective_power:
        metadata["objective_power"] = source.objective_power
    if source.focal_planes:  # a z-stack read at one plane: which, and that it is one of N
        metadata.update(source.focal_planes.facts(source.path))
    scale = (1.0, 1.0)
    if source.um_per_px:
        metadata["um_per_px"] = source.um_per_px
        scale = (source.um_per_px, source.um_per_px)
    return LoadedImage(
        levels[0], levels, HISTOLOGY, metadata, scale, source.path, source.um_per_px, source
    )


def load_slide(path: str | Path, *, um_per_px: float | None = None) -> LoadedImage:
    """Open any whole-slide format lazily (see :func:`.wsi.open_slide` for who reads what).

    Raises:
        ImageReadError: Missing, damaged, unsupported or inconsistent; names the file.
    """
    return loaded_from_slide(open_slide(path, um_per_px=um_per_px))


def _is_histology_series(path: Path, series: Any) -> bool:
    """The reader's one modality rule (``modality_of``), judged on the shape and, for colour,
    on a centre window of the smallest level: a film saved as a colour pyramid is grey."""
    yxs = pixel_shape(series.axes, tuple(int(n) for n in series.shape))
    if modality_of(yxs, path) != HISTOLOGY:
        return False
    return modality_of(yxs, path, _smallest_level_window(series)) == HISTOLOGY


def _smallest_level_window(series: Any) -> np.ndarray:
    """A centre window of at most ``GREY_CHECK_EDGE`` px of the series' smallest level."""
    level = _to_yxs(_zarr_levels(series)[-1], series.axes)
    top, left = (max(0, (n - GREY_CHECK_EDGE) // 2) for n in level.shape[:2])
    return np.asarray(level[top : top + GREY_CHECK_EDGE, left : left + GREY_CHECK_EDGE])


def tiff_header(path: str | Path) -> tuple[str, int]:
    """The modality and the frame count :func:`load_tiff` gives a TIFF, from one opening of
    the file, without decoding it whole.

    The first series decides the modality (a stack of grey frames or a film with a thumbnail
    page is a mammogram; an H&E pyramid is histology), by :func:`_is_histology_series`: the
    shape, and for colour a centre window of the smallest level (a film saved as colour is
    grey). Frames are its frame axes' (:func:`.frames.frame_count`), whether the stack opens
    whole or lazily; only a file of one frame opens as a slide.

    Raises:
        ImageReadError: Not a TIFF tifffile can parse, or holding no image.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tiff_series(tif):
                raise ImageReadError(f"{path}: the TIFF holds no image")
            series = tif.series[0]
            check_axes(path, series.axes, series.shape)
            histology = _is_histology_series(path, series)
            return (HISTOLOGY if histology else MAMMOGRAM), frame_count(series)
    except ImageReadError:
        raise
    except Exception as error:  # tifffile/zarr raise many kinds on damaged files
        raise ImageReadError(f"{path}: not a readable TIFF ({error})") from error


def load_tiff(path: str | Path) -> LoadedImage:
    """Open a TIFF or SVS: pyramids and files over ``EAGER_MAX_BYTES`` lazily, others at once.

    Colour pyramids of one frame become a :class:`.tiff_slide.TiffSlide` (``loaded.slide``);
    small files are decoded whole; grayscale pyramids (mammograms, and colour ones whose
    R = G = B) stay lazy with their bit depth. A stack of pages (grey film frames, or colour
    frames) opens frames first, every frame kept: whole when small, else lazily (each level of
    a pyramid a lazy stack, a frame read when shown). A single image and a stack alike open at
    the pixel size the file states (OME, ImageJ, resolution tags in inch or cm:
    :mod:`.tiff_physical`), colour in µm and grey in mm, and a stack's frames at the step
    ImageJ or OME state; otherwise at the size a BreaKHis or mini-MIAS name documents at the
    file's width (``_core.file_scale``), else in pixels.

    Raises:
        ImageReadError: Not a TIFF, truncated, or an unsupported pixel layout.
    """
    import tifffile

    path = Path(path)
    try:
        tif = tifffile.TiffFile(path)
    except (
        tifffile.TiffFileError,
        OSError,
        ValueError,
        IndexError,
        KeyError,
        struct.error,  # a file cut short inside its header (e.g. 6 bytes)
    ) as error:
        raise ImageReadError(f"{path}: not a readable TIFF ({error})") from error
    try:
        if not tiff_series(tif):
            raise ImageReadError(f"{path}: the TIFF holds no image")
        series = tif.series[0]
        check_tiff_structure(path, tif)
        if _is_large(series):
            histology = _is_histology_series(path, series)
            if opens_as_slide(series, histology):
                tif.close()
                return load_slide(path)
            return _open_lazy(path, tif, histology)
        array = series.asarray()
    except ImageReadError:
        tif.close()
        raise
    except Exception as error:  # tifffile/imagecodecs raise many kinds on corrupt tiles
        tif.close()
        raise ImageReadError(
            f"{path}: cannot decode TIFF ({type(error).__name__}: {error})"
        ) from error
    mpp = tiff_um_per_px(tif)
    step = tiff_frame_step_um(tif)
    axes = series.axes
    bits = tiff_bits(tif)  # colour converts by it, as the lazy reads of a larger file do
    tif.close()
    stack = np.asarray(_to_yxs(array, axes, frames=True))
    extra: dict[str, Any] = {"axes": axes}
    if len(stack) > 1:  # film frames, or colour ones (a z-stack of a section): all of them
        return finish_stack(path, stack, extra, step, pixel_um=mpp, colour_bits=bits)
    return finish_loaded(path, stack[0], extra, pixel_um=mpp, colour_bits=bits)


def opens_as_slide(series: Any, histology: bool) -> bool:
    """Whether :func:`load_tiff` opens a TIFF series (of the ``histology`` modality, as
    :func:`_is_histology_series` finds it) as a whole slide, lazy and one image: a colour
    pyramid or colour file over ``EAGER_MAX_BYTES`` of one frame. A colour stack of such
    frames opens as a lazy stack instead, every frame kept (a slide reads one plane)."""
    return histology and _is_large(series) and frame_count(series) == 1


def _is_large(series: Any) -> bool:
    """A pyramid, or a file over ``EAGER_MAX_BYTES``: read lazily rather than whole."""
    return len(series.levels) > 1 or series.nbytes > EAGER_MAX_BYTES
