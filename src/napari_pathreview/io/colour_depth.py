"""Deep colour to RGB uint8 by the bit depth the file states: one rule for every colour read.

A colour file with more than 8 bits a sample (a 12-bit camera's TIFF or DICOM, a 16-bit
scan) is brought to 8 bits by scaling its full stated range, ``2**bits - 1``, to 255. The
depth is the file's own statement (DICOM ``BitsStored``; TIFF ``BitsPerSample``, or OME's
``SignificantBits`` when given; PNG's bit depth, or its ``sBIT``; 16 otherwise), a per-file
constant: a frame decoded whole, a lazy stack's tile or a slide's region of the same file
convert alike, so the same pixels look the same and reach a model the same whether the file
is opened whole or lazily. The data's own range is never used: it would make tiles disagree.
"""

from __future__ import annotations

import logging
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.alpha import flatten_alpha

logger = logging.getLogger(__name__)

DEFAULT_BITS = 16
"""The depth of a 16-bit file that states no narrower one: 65535 is white."""


def _checked_bits(bits: Any, container: int = DEFAULT_BITS) -> int:
    """A stated depth as an int in 1..``container``; anything else is the container's."""
    try:
        value = int(bits)
    except (TypeError, ValueError):
        return container
    return value if 1 <= value <= container else container


def full_scale(bits: int) -> int:
    """The largest value a sample of ``bits`` bits holds (white)."""
    return (1 << bits) - 1


def scale_to_uint8(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned 16-bit ``pixels`` as uint8, ``2**bits - 1`` → 255 (rounded; values above the
    stated range clip to 255); uint8 and other types are returned unchanged (their own rules
    apply: :func:`._core.to_rgb_uint8`)."""
    if pixels.dtype != np.uint16:
        return pixels
    top = full_scale(bits)
    scaled = (pixels.astype(np.uint32) * 255 + top // 2) // top
    return np.minimum(scaled, 255).astype(np.uint8)


def region_to_rgb(region: np.ndarray, bits: int) -> np.ndarray:
    """A decoded region (Y×X or Y×X×S, uint8/uint16) of a file of ``bits`` stated bits as RGB
    uint8: scaled by :func:`scale_to_uint8`, alpha blended onto white
    (:func:`.alpha.flatten_alpha`), grey repeated. Elementwise, so a file read tile by tile
    converts as it would whole.

    Raises:
        ImageReadError: Pixels that are neither 8- nor 16-bit.
    """
    if region.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"unsupported slide pixel type {region.dtype}")
    region = scale_to_uint8(region, bits)
    if region.ndim == 2:
        region = region[..., None]
    region = flatten_alpha(region)
    if region.shape[-1] == 1:
        region = np.repeat(region, 3, axis=-1)
    return np.ascontiguousarray(region[..., :3])


def dicom_bits(ds: Any) -> int:
    """A DICOM's stated depth: ``BitsStored``, else ``BitsAllocated``, else 16."""
    allocated = _checked_bits(getattr(ds, "BitsAllocated", None))
    return _checked_bits(getattr(ds, "BitsStored", None), allocated)


def _ome_significant_bits(tif: Any, image: int) -> int | None:
    """``SignificantBits`` of image ``image`` of an OME-TIFF, None when not stated."""
    xml = tif.ome_metadata if getattr(tif, "is_ome", False) else None
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        logger.warning("%s: unreadable OME-XML; bit depth from BitsPerSample", tif.filename)
        return None
    pixels = [element for element in root.iter() if element.tag.endswith("Pixels")]
    value = pixels[image].get("SignificantBits") if image < len(pixels) else None
    return int(value) if value and value.isdigit() else None


def tiff_bits(tif: Any, series: int = 0) -> int:
    """A TIFF series' stated depth: OME ``SignificantBits`` of its image when given, else its
    ``BitsPerSample``, else 16. A 12-bit TIFF (packed, or 16-bit samples whose OME metadata
    states 12 significant bits) is 12; every level and frame of the series shares it."""
    per_sample = _checked_bits(getattr(tif.series[series].keyframe, "bitspersample", None))
    return _checked_bits(_ome_significant_bits(tif, series), per_sample)


def png_bits(path: Path) -> int | None:
    """A PNG's stated depth: its colour channels' ``sBIT`` (significant bits) when given, else
    the IHDR bit depth; None for a file that is no PNG (the decoder says why)."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        depth = None
        while header := handle.read(8):
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"IDAT", b"IEND"):  # sBIT comes before the image data
                break
            body = handle.read(length)
            handle.seek(4, 1)  # CRC
            if kind == b"IHDR" and len(body) >= 9:
                depth = body[8]
            elif kind == b"sBIT" and body and depth:
                colour = body[:3] if len(body) >= 3 else body[:1]  # RGB(A) or grey(+alpha)
                return _checked_bits(max(colour), depth)
    return _checked_bits(depth) if depth else None
