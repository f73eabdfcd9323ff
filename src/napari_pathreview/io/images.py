"""One entry point for every image the plugin opens: ``load_image(path) -> LoadedImage``.

The suffix → loader table below picks the reader: PNG/JPEG/PGM (:mod:`.raster`), TIFF/SVS
(:mod:`.slides`: tifffile, or OpenSlide for vendor TIFF flavours), the other whole-slide
formats (OpenSlide) and DICOM (:mod:`.mammograms` for single images, wsidicom for
whole-slide series). The *modality* decides how an image is shown and which models apply:
colour images are histology (RGB uint8), single-channel images and colour images whose
channels are equal (a film saved as RGB) are mammograms (uint8 or uint16 grayscale).
``to_rgb_uint8`` is the one conversion every model input goes through.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io._core import (
    DICOM_SUFFIXES,
    HISTOLOGY,
    IMAGE_SUFFIXES,
    MAMMOGRAM,
    OPENSLIDE_SUFFIXES,
    RASTER_SUFFIXES,
    SLIDE_SUFFIXES,
    TIFF_SUFFIXES,
    LoadedImage,
    base_metadata,
    check_pixel_size,
    finish_loaded,
    grey_in_colour,
    has_dicom_preamble,
    is_supported_image,
    modality_of,
    normalize_pixels,
    to_rgb_uint8,
)
from napari_pathreview.io.dicom_slide import WSI_SOP_CLASS, is_dicom_wsi
from napari_pathreview.io.dicom_stack import is_large_colour_stack, load_large_colour_stack
from napari_pathreview.io.frames import choose_frame
from napari_pathreview.io.mammograms import load_dicom
from napari_pathreview.io.raster import load_raster, read_raster
from napari_pathreview.io.slides import load_slide, load_tiff

logger = logging.getLogger(__name__)

__all__ = [
    "DICOM_SUFFIXES",
    "HISTOLOGY",
    "IMAGE_SUFFIXES",
    "LOADERS",
    "MAMMOGRAM",
    "OPENSLIDE_SUFFIXES",
    "RASTER_SUFFIXES",
    "SLIDE_SUFFIXES",
    "TIFF_SUFFIXES",
    "LoadedImage",
    "base_metadata",
    "finish_loaded",
    "grey_in_colour",
    "dicom_frames",
    "is_supported_image",
    "load_image",
    "modality_of",
    "normalize_pixels",
    "read_raster",
    "to_rgb_uint8",
]


def _load_dicom_any(path: Path) -> LoadedImage:
    """A DICOM WSI instance opens its whole series; a large colour stack lazily, frame by
    frame (:mod:`.dicom_stack`); any other DICOM (a film, a stack) is decoded whole."""
    if is_dicom_wsi(path):
        return load_slide(path)
    return load_large_colour_stack(path) if is_large_colour_stack(path) else load_dicom(path)


def _load_openslide(path: Path) -> LoadedImage:
    return load_slide(path)


LOADERS: dict[str, Callable[[Path], LoadedImage]] = {
    **{suffix: _load_openslide for suffix in OPENSLIDE_SUFFIXES},
    **{suffix: load_tiff for suffix in TIFF_SUFFIXES},
    **{suffix: _load_dicom_any for suffix in DICOM_SUFFIXES},
    **{suffix: load_raster for suffix in RASTER_SUFFIXES},
}
"""File suffix → loader; DICOM files are also recognised by content whatever their name."""

_has_dicom_preamble = has_dicom_preamble  # kept for callers of the old private name


def load_image(
    path: str | Path, *, um_per_px: float | None = None, frame: int | str | None = None
) -> LoadedImage:
    """Open a histology image, whole slide or mammogram.

    Args:
        path: An image or slide file (see ``IMAGE_SUFFIXES``), or a DICOM WSI folder.
        um_per_px: Level-0 pixel size (µm) for histology whose file does not state it;
            it replaces the file's value. Ignored for mammograms.
        frame: For a stack of frames (tomosynthesis, a multi-frame TIFF or colour DICOM):
            which frame to read, counted from 0, or ``"all"`` for the whole stack (the
            viewer's frames×H×W or frames×H×W×3 layer). A single-frame image is read as it
            is whatever ``frame`` says.

    Returns:
        The image with its modality, file facts (BreaKHis name, MIAS Info.txt beside it,
        DICOM tags, slide properties) and pixel spacing.

    Raises:
        ImageReadError: The file is missing, empty, truncated, corrupt or of an
            unsupported kind; the message names the file and the reason.
        MultiFrameError: The file is a stack and ``frame`` is None: a 2-D model must not
            read its first frame unasked (``io.frames``).
        InvalidInputError: ``frame`` is not one of the stack's frames.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        loaded = load_slide(path)  # a DICOM WSI folder; anything else is refused there
    elif not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    elif path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")
    elif suffix not in DICOM_SUFFIXES and has_dicom_preamble(path):
        loaded = _load_dicom_any(path)
    elif suffix in LOADERS:
        loaded = LOADERS[suffix](path)
    else:
        raise ImageReadError(
            f"{path}: unsupported image type {suffix or '(no suffix)'}; "
            f"expected one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    loaded = choose_frame(loaded, frame)
    return with_pixel_size(loaded, um_per_px) if um_per_px is not None else loaded


def with_pixel_size(loaded: LoadedImage, um_per_px: float) -> LoadedImage:
    """The same image with a user-given level-0 pixel size (histology only).

    Raises:
        InvalidInputError: ``um_per_px`` is not a positive finite number (0 used to be
            ignored and NaN or inf became the layer's scale).
    """
    check_pixel_size(um_per_px, loaded.path)
    if loaded.modality != HISTOLOGY:
        logger.info("%s: a pixel size in µm applies to histology only; ignored", loaded.path)
        return loaded
    if loaded.slide is not None:
        loaded.slide.um_per_px = float(um_per_px)
    metadata = {**loaded.metadata, "um_per_px": float(um_per_px), "um_per_px_source": "user"}
    return dataclasses.replace(
        loaded, metadata=metadata, scale=(um_per_px, um_per_px), um_per_px=float(um_per_px)
    )


def dicom_frames(ds: Any) -> int:
    """How many frames the reader finds in a DICOM header: ``NumberOfFrames``, except that a
    whole-slide instance's frames are its tiles (1: it opens as one slide)."""
    if str(getattr(ds, "SOPClassUID", "")) == WSI_SOP_CLASS:
        return 1
    return int(getattr(ds, "NumberOfFrames", 1) or 1)
