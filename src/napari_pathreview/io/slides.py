"""TIFF and SVS: small files are decoded at once, pyramids and big files stay lazy.

A whole-slide image can be larger than memory, so its levels are dask arrays over
tifffile's zarr view of the tiles: napari asks for the tiles it draws and nothing else
is read. Level 0 is never materialised here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.images import (
    HISTOLOGY,
    LoadedImage,
    base_metadata,
    finish_loaded,
    modality_of,
)

logger = logging.getLogger(__name__)

EAGER_MAX_BYTES = 256 * 2**20
"""Single-level TIFFs up to this size are decoded whole; larger ones stay lazy."""

VIRTUAL_LEVEL_EDGE = 4096
"""A lazy single-level image wider than this gets strided overview levels."""

_MPP = re.compile(r"MPP\s*=\s*([0-9.]+)")


def _microns_per_pixel(tif: Any) -> float | None:
    """Pixel size in µm from an Aperio description (``MPP = 0.25``) or the resolution tags."""
    page = tif.pages[0]
    match = _MPP.search(page.description or "")
    if match:
        return float(match.group(1))
    try:
        resolution = page.tags["XResolution"].value
        unit = page.tags["ResolutionUnit"].value
    except KeyError:
        return None
    per_unit = resolution[0] / resolution[1] if isinstance(resolution, tuple) else float(resolution)
    microns = {2: 25_400.0, 3: 10_000.0}.get(int(unit))  # inch, centimetre
    if not per_unit or microns is None:
        return None
    return microns / per_unit


def _to_yxs(level: Any, axes: str) -> Any:
    """Reorder a lazy level to Y×X or Y×X×S, taking the first plane of any other axis."""
    import dask.array as da

    # the zarr array's chunks are the file's tiles: dask must keep them, not rechunk ("auto")
    array = (
        da.from_array(level, chunks=level.chunks) if hasattr(level, "chunks") else da.asarray(level)
    )
    index = []
    kept = []
    for position, axis in enumerate(axes):
        if axis in "YXS" or (axis == "C" and array.shape[position] in (3, 4)):
            index.append(slice(None))
            kept.append("S" if axis == "C" else axis)
        else:
            index.append(0)
    array = array[tuple(index)]
    order = [kept.index(a) for a in "YXS" if a in kept]
    return array.transpose(order)


def _lazy_uint8(level: Any) -> Any:
    """Histology levels must be uint8 RGB; 16-bit slides are scaled by 1/257 tile by tile.

    The whole-slide maximum is unknown without reading every tile, so the full 16-bit
    range is assumed (the convention of 16-bit brightfield scanners).
    """
    if level.dtype == np.uint8:
        return level
    if level.dtype == np.uint16:
        return (level // 257).astype(np.uint8)
    raise ImageReadError(f"unsupported slide pixel type {level.dtype}; expected uint8 or uint16")


def _virtual_levels(level0: Any) -> list[Any]:
    """Strided overviews of a big single-level image, so napari never asks for all of level 0.

    Each overview is computed tile by tile (a tile is read, subsampled and dropped), so
    memory stays bounded; it is slower than a real pyramid, which the message suggests.
    """
    logger.info(
        "no pyramid in this file: overviews are computed from full-resolution tiles; "
        "write a pyramidal TIFF (io.pyramid.write_pyramidal_tiff) for fast browsing"
    )
    levels = [level0]
    while max(levels[-1].shape[:2]) > VIRTUAL_LEVEL_EDGE // 2:
        levels.append(levels[-1][::2, ::2])
    return levels


def _open_lazy(path: Path, tif: Any) -> LoadedImage:
    import zarr

    series = tif.series[0]
    store = series.aszarr()
    root = zarr.open(store, mode="r")
    arrays = [root[str(i)] for i in range(len(series.levels))] if len(series.levels) > 1 else [root]
    levels = [_to_yxs(array, series.axes) for array in arrays]
    modality = modality_of(tuple(levels[0].shape), path)
    if modality == HISTOLOGY:
        levels = [_lazy_uint8(level[..., :3]) for level in levels]
    virtual = len(levels) == 1 and max(levels[0].shape[:2]) > VIRTUAL_LEVEL_EDGE
    if virtual:
        levels = _virtual_levels(levels[0])
    metadata = base_metadata(path, modality)
    mpp = _microns_per_pixel(tif)
    metadata.update(
        {
            "original_dtype": str(series.dtype),
            "original_shape": list(series.shape),
            "axes": series.axes,
            "levels": [list(level.shape) for level in levels],
            "lazy": True,
            "virtual_levels": virtual,
        }
    )
    scale = (1.0, 1.0)
    if mpp:
        metadata["microns_per_pixel"] = mpp
        scale = (mpp, mpp)
    # No close(): the zarr store references the TiffFile, whose handle the tiles are read
    # through; it is released with the last lazy array.
    return LoadedImage(levels[0], levels, modality, metadata, scale, path)


def load_tiff(path: str | Path) -> LoadedImage:
    """Open a TIFF or SVS: pyramids and files over ``EAGER_MAX_BYTES`` lazily, others at once.

    Raises:
        ImageReadError: Not a TIFF, truncated, or an unsupported pixel layout.
    """
    import tifffile

    path = Path(path)
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as error:
        raise ImageReadError(f"{path}: not a readable TIFF ({error})") from error
    try:
        if not tif.series:
            raise ImageReadError(f"{path}: the TIFF holds no image")
        series = tif.series[0]
        if len(series.levels) > 1 or series.nbytes > EAGER_MAX_BYTES:
            return _open_lazy(path, tif)
        array = series.asarray()
    except ImageReadError:
        tif.close()
        raise
    except Exception as error:  # tifffile/imagecodecs raise many kinds on corrupt tiles
        tif.close()
        raise ImageReadError(
            f"{path}: cannot decode TIFF ({type(error).__name__}: {error})"
        ) from error
    mpp = _microns_per_pixel(tif)
    axes = series.axes
    tif.close()
    array = np.asarray(_to_yxs(array, axes))
    extra: dict[str, Any] = {"axes": axes}
    scale = (1.0, 1.0)
    if mpp:
        extra["microns_per_pixel"] = mpp
        scale = (mpp, mpp)
    return finish_loaded(path, array, extra, scale)
