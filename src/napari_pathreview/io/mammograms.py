"""Mammograms: DICOM through pydicom, and display helpers for grayscale images.

DICOM pixels go through the modality LUT (rescale slope/intercept), then the VOI LUT or
window the file asks for, and MONOCHROME1 images (where 0 is white) are inverted, so the
array looks like what a radiologist's workstation shows. ``PixelSpacing`` (mm) becomes
the layer scale, so measurements in napari are in millimetres.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io._core import (
    HISTOLOGY,
    MAMMOGRAM,
    LoadedImage,
    base_metadata,
    to_rgb_uint8,
)
from napari_pathreview.io.frames import frame_spacing_mm, pixel_measures

logger = logging.getLogger(__name__)

_TAGS = {  # metadata key → DICOM keyword
    "laterality": "ImageLaterality",
    "view": "ViewPosition",
    "patient_id": "PatientID",
    "study_date": "StudyDate",
    "manufacturer": "Manufacturer",
    "body_part": "BodyPartExamined",
    "photometric": "PhotometricInterpretation",
}


def contrast_limits(image: Any, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display range from percentiles of a subsample, so one bright label does not grey everything.

    Args:
        image: Grayscale array (numpy or dask), or a stack of frames (frames first, so the
            limits hold for every frame); at most ~1M pixels are read, evenly spread.
        low: Lower percentile.
        high: Upper percentile.

    Returns:
        (low, high) with high > low, usable as a napari layer's ``contrast_limits``.
    """
    size = float(np.prod(image.shape)) if len(image.shape) else 1.0
    step = max(1, int((size / 1_000_000) ** (1.0 / max(1, len(image.shape)))))
    sample = np.asarray(image[(slice(None, None, step),) * len(image.shape)]).astype(np.float64)
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _to_unsigned(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Shift a windowed/rescaled image to start at 0 and store it as uint8 or uint16."""
    values = pixels.astype(np.float64)
    values -= min(0.0, float(values.min()))
    top = float(values.max()) if values.size else 0.0
    if bits <= 8 and top <= 255:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if top > 65535:  # wide float/int32 output: map onto the 16-bit range
        values *= 65535.0 / top
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


def _dicom_pixels(ds: Any, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(
            f"{path}: DICOM file without pixel data (a report or structured document?)"
        )
    try:
        raw = ds.pixel_array
    except Exception as error:  # pydicom raises many kinds for bad or unsupported encodings
        raise ImageReadError(
            f"{path}: cannot decode DICOM pixel data ({type(error).__name__}: {error})"
        ) from error
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    grey = photometric in ("MONOCHROME1", "MONOCHROME2")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1 and not grey:
        logger.info("%s: %s colour frames; showing the first", path, frames)
        raw = raw[0]
    facts: dict[str, Any] = {"original_dtype": str(raw.dtype)}
    if not grey:
        return raw, facts  # colour DICOM (e.g. a photographed slide)
    if frames > 1:  # tomosynthesis, an enhanced object's frames: the whole stack, one window
        facts["frames"] = frames
    pixels = apply_modality_lut(raw, ds)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if has_voi:
        pixels = apply_voi_lut(pixels, ds, index=0)
        facts["voi_applied"] = True
        if "WindowCenter" in ds and "VOILUTSequence" not in ds:
            facts["window_center"] = _first_float(ds.WindowCenter)
            facts["window_width"] = _first_float(ds.WindowWidth)
    bits = int(getattr(ds, "BitsStored", 16) or 16)
    pixels = _to_unsigned(np.asarray(pixels), bits)
    if photometric == "MONOCHROME1":
        top = 255 if pixels.dtype == np.uint8 else max((1 << bits) - 1, int(pixels.max()))
        pixels = (top - pixels.astype(np.int64)).clip(0, None).astype(pixels.dtype)
        facts["inverted_monochrome1"] = True
    return pixels, facts


def _first_float(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _spacing(ds: Any) -> tuple[float, float] | None:
    """(row, col) mm per pixel in the breast: ``PixelSpacing`` (calibrated at the patient), else
    ``ImagerPixelSpacing`` (at the detector, which a mammography unit's geometry magnifies: a
    magnification view by ~1.5–2) divided by ``EstimatedRadiographicMagnificationFactor``."""
    measures = pixel_measures(ds)  # enhanced objects (tomosynthesis) state it per frame group
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, keyword, None)
        if value is None and measures is not None:
            value = getattr(measures, keyword, None)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            factor = 1.0
            if keyword == "ImagerPixelSpacing":
                factor = float(getattr(ds, "EstimatedRadiographicMagnificationFactor", 0) or 1.0)
            factor = factor if factor > 0 else 1.0
            return float(value[0]) / factor, float(value[1]) / factor
    return None


def load_dicom(path: str | Path) -> LoadedImage:
    """Open a DICOM image as a display-ready mammogram (or histology, for colour DICOM).

    A grey multi-frame object (tomosynthesis, ``NumberOfFrames`` > 1) opens whole: a
    frames×H×W stack windowed as one, its frame spacing from ``SpacingBetweenSlices`` or
    ``SliceThickness`` (:mod:`.frames`).

    Raises:
        ImageReadError: Not DICOM, no pixel data, or an encoding that cannot be decoded.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ImageReadError(f"{path}: not a readable DICOM file ({error})") from error
    pixels, facts = _dicom_pixels(ds, path)
    frames = int(facts.get("frames", 1))
    stacked = frames > 1
    modality = (
        HISTOLOGY if not stacked and pixels.ndim == 3 and pixels.shape[-1] in (3, 4) else MAMMOGRAM
    )
    if modality == HISTOLOGY:
        pixels = to_rgb_uint8(pixels)
    elif pixels.ndim != 2 + stacked:
        raise ImageReadError(f"{path}: unsupported DICOM pixel array shape {pixels.shape}")
    metadata = base_metadata(path, modality)
    metadata["dataset"] = "DICOM"
    for key, keyword in _TAGS.items():
        value = getattr(ds, keyword, None)
        if value not in (None, ""):
            metadata[key] = str(value)
    if "laterality" not in metadata and getattr(ds, "Laterality", ""):
        metadata["laterality"] = str(ds.Laterality)  # series-level tag of older files
    metadata.update(facts)
    spacing = _spacing(ds)
    if spacing is not None:
        metadata["pixel_spacing_mm"] = list(spacing)
    metadata["original_shape"] = list(pixels.shape)
    between = frame_spacing_mm(ds) if stacked else None
    if between is not None:
        metadata["frame_spacing_mm"] = between
    return LoadedImage(
        pixels,
        [pixels],
        modality,
        metadata,
        spacing or (1.0, 1.0),
        path,
        frames=frames,
        frame_spacing_mm=between,
    )
