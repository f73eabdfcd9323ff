"""A large colour DICOM stack as a lazy stack: one frame decoded when napari shows it.

A multi-frame colour object (a VL photographic or microscopy series of a section, a colour
z-stack) opens frames first, as :func:`.mammograms.load_dicom` opens a small one. Over the
eager-read limit (:data:`.slides.EAGER_MAX_BYTES`) decoding it whole would hold every frame
in memory, so each frame is read from the file on its own (pydicom's
``pixel_array(path, index=K)`` reads that frame's bytes only) and converted by the file's
``BitsStored`` (:mod:`.colour_depth`), as the frames of a small one decoded whole are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io import slides
from napari_pathreview.io._core import HISTOLOGY, LoadedImage
from napari_pathreview.io.colour_depth import dicom_bits, region_to_rgb
from napari_pathreview.io.mammograms import dicom_loaded

_STACK_TAGS = ("NumberOfFrames", "SamplesPerPixel", "Rows", "Columns", "BitsAllocated")


def _header(path: Path) -> Any | None:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - load_dicom reports what is wrong with the file
        return None


def _stack_bytes(ds: Any) -> int:
    """What decoding a DICOM whole would hold in memory (its frames' pixels)."""
    counts = [int(getattr(ds, keyword, 1) or 1) for keyword in _STACK_TAGS[:4]]
    return math.prod(counts) * math.ceil(int(getattr(ds, "BitsAllocated", 8) or 8) / 8)


def is_large_colour_stack(path: Path) -> bool:
    """Whether a (non-slide) DICOM is a colour stack over :data:`.slides.EAGER_MAX_BYTES`."""
    ds = _header(path)
    if ds is None:
        return False
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) >= 3
    return frames > 1 and colour and _stack_bytes(ds) > slides.EAGER_MAX_BYTES


def _frame(path: Path, index: int, bits: int) -> np.ndarray:
    """Frame ``index`` of ``path`` (of ``bits`` stated bits) as RGB uint8 (its bytes only are
    read)."""
    from pydicom.pixels import pixel_array

    try:
        return region_to_rgb(np.asarray(pixel_array(path, index=index)), bits)
    except ImageReadError as error:
        raise ImageReadError(f"{path}: frame {index}: {error}") from error
    except Exception as error:  # pydicom and its codecs raise many kinds on bad frames
        raise ImageReadError(
            f"{path}: cannot decode frame {index} ({type(error).__name__}: {error})"
        ) from error


def load_large_colour_stack(path: str | Path) -> LoadedImage:
    """Open a large colour DICOM stack lazily: frames×H×W×3 RGB uint8, one dask chunk per
    frame, at the scale the file states (``PixelSpacing``, frame spacing), as a small stack.

    The last frame is decoded now, so a damaged or truncated file (its last frames are the
    first lost) is refused here, naming it, rather than on the frame slider.

    Raises:
        ImageReadError: Not a readable DICOM, or its last frame cannot be decoded.
    """
    import dask
    import dask.array as da

    path = Path(path)
    ds = _header(path)
    if ds is None:
        raise ImageReadError(f"{path}: not a readable DICOM file")
    frames = int(ds.NumberOfFrames)
    shape = (int(ds.Rows), int(ds.Columns), 3)
    bits = dicom_bits(ds)
    last = _frame(path, frames - 1, bits)
    if last.shape != shape:
        raise ImageReadError(f"{path}: frames decode as {last.shape}, the header says {shape}")
    read = dask.delayed(_frame, pure=True)
    stack = da.stack(
        [da.from_delayed(read(path, k, bits), shape=shape, dtype=np.uint8) for k in range(frames)]
    )
    container = f"uint{8 * math.ceil(int(getattr(ds, 'BitsAllocated', 8) or 8) / 8)}"
    facts = {"frames": frames, "original_dtype": container, "lazy": True}
    return dicom_loaded(ds, path, stack, HISTOLOGY, facts)
