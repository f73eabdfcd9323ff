"""Mammograms: DICOM through pydicom, and display helpers for grayscale images.

DICOM pixels go through the modality LUT (rescale slope/intercept), then the VOI LUT or
window the file asks for (each frame of a stack through its own where the file states one
per frame: :func:`.frames.frame_rescale`, :func:`.frames.frame_voi`), and MONOCHROME1 images
(where 0 is white) are inverted, so the array looks like what a radiologist's workstation
shows. ``PixelSpacing`` (mm) becomes the layer scale, so measurements in napari are in
millimetres.
"""

from __future__ import annotations

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
    stack_to_rgb_uint8,
    to_rgb_uint8,
)
from napari_pathreview.io.colour_depth import dicom_bits, scale_to_uint8
from napari_pathreview.io.frames import (
    frame_rescale,
    frame_spacing_mm,
    frame_voi,
    pixel_measures,
)

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
    facts: dict[str, Any] = {"original_dtype": str(raw.dtype)}
    if frames > 1:  # tomosynthesis, an enhanced object's or a colour series' frames: all
        facts["frames"] = frames
    if not grey:
        return raw, facts  # colour DICOM (e.g. a photographed slide, or a stack of them)
    rescales = [frame_rescale(ds, k) for k in range(frames)]
    pixels, window_facts = _windowed(_rescaled(raw, ds, rescales), ds, rescales)
    facts.update(window_facts)
    bits = int(getattr(ds, "BitsStored", 16) or 16)
    pixels = _to_unsigned(np.asarray(pixels), bits)
    if photometric == "MONOCHROME1":
        top = 255 if pixels.dtype == np.uint8 else max((1 << bits) - 1, int(pixels.max()))
        pixels = (top - pixels.astype(np.int64)).clip(0, None).astype(pixels.dtype)
        facts["inverted_monochrome1"] = True
    return pixels, facts


_VOI_KEYWORDS = ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence")
_RESCALE_KEYWORDS = ("RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence")
_PIXEL_KEYWORDS = ("PhotometricInterpretation", "BitsStored", "PixelRepresentation")

Place = tuple[str, Any] | None
"""Where a frame states a transform (:func:`.frames.frame_rescale`, :func:`.frames.frame_voi`)."""


def _one_place(places: list[Place]) -> bool:
    """Whether every frame takes the same item (or none): one call transforms the stack."""
    first = places[0][1] if places[0] else None
    return all((p[1] if p else None) is first for p in places)


def _rescaled(raw: np.ndarray, ds: Any, places: list[Place]) -> np.ndarray:
    """``raw`` through each frame's modality LUT (``places``, one per frame: the frame's own,
    else the shared groups', else the top level's); frames that share one in one call."""
    from pydicom.pixels import apply_modality_lut

    if _one_place(places):
        return np.asarray(apply_modality_lut(raw, _view(ds, places[0][1]))) if places[0] else raw
    out = [
        apply_modality_lut(frame, _view(ds, p[1])) if p else frame
        for frame, p in zip(raw, places, strict=True)
    ]
    return np.stack([np.asarray(o, dtype=np.float64) for o in out])


def _windowed(
    pixels: np.ndarray, ds: Any, rescales: list[Place]
) -> tuple[np.ndarray, dict[str, Any]]:
    """``pixels`` (after each frame's modality LUT, ``rescales``) through each frame's VOI
    (:func:`.frames.frame_voi`: the frame's own, else the shared groups', else the top level's),
    with what was applied.

    A stack whose frames all take one VOI and one rescale is windowed in one call; otherwise
    frame by frame, each into the output range its own rescale gives, so the frames stay
    comparable.
    """
    from pydicom.pixels import apply_voi_lut

    found = [frame_voi(ds, k) for k in range(len(rescales))]
    facts: dict[str, Any] = {}
    if any(rescales):
        facts["rescale_from"] = (
            rescales[0][0] if _one_place(rescales) and rescales[0] else "per-frame"
        )
    if not any(found):
        return pixels, facts
    facts["voi_applied"] = True
    windows = [_window_of(f[1]) if f else None for f in found]
    one_voi = _one_place(found)
    facts["window_from"] = found[0][0] if one_voi else "per-frame"
    if one_voi and windows[0]:
        facts["window_center"], facts["window_width"] = windows[0]
    elif not one_voi:
        facts["frame_windows"] = windows
    if one_voi and _one_place(rescales):
        rescale = rescales[0][1] if rescales[0] else None
        return apply_voi_lut(pixels, _view(ds, rescale, found[0][1]), index=0), facts
    out = [
        apply_voi_lut(frame, _view(ds, r[1] if r else None, f[1]), index=0) if f else frame
        for frame, f, r in zip(pixels, found, rescales, strict=True)
    ]
    return np.stack([o.astype(np.float64) for o in out]), facts


def _view(ds: Any, rescale: Any, voi: Any = None) -> Any:
    """A dataset pydicom's ``apply_modality_lut`` and ``apply_voi_lut`` can read: ``ds``'s pixel
    description (bit depth) with a frame's rescale (it also sets the windowed output range)
    and VOI, which may sit in functional-group items."""
    if all(item is None or item is ds for item in (rescale, voi)):
        return ds
    from pydicom.dataset import Dataset

    view = Dataset()
    sources = ((ds, _PIXEL_KEYWORDS), (rescale, _RESCALE_KEYWORDS), (voi, _VOI_KEYWORDS))
    for source, keywords in sources:
        for keyword in keywords if source is not None else ():
            if keyword in source:
                view.add(source[keyword])
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta  # the byte order of an OW LUT
    return view


def _window_of(item: Any) -> list[float] | None:
    """[centre, width] of the first window ``item`` states (None: none, or a VOI LUT, which
    ``apply_voi_lut`` prefers over a window)."""
    if "WindowCenter" not in item or item.get("VOILUTSequence"):
        return None
    return [_first_float(item.WindowCenter), _first_float(item.WindowWidth)]


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

    A multi-frame object (tomosynthesis, ``NumberOfFrames`` > 1) opens whole: a frames×H×W
    grey stack, each frame through its own window where the file states one per frame
    (:func:`.frames.frame_voi`), or a frames×H×W×3 colour stack; its frame spacing from
    ``SpacingBetweenSlices`` or ``SliceThickness`` (:mod:`.frames`).

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
    colour = pixels.ndim == 3 + stacked and pixels.shape[-1] in (3, 4)
    modality = HISTOLOGY if colour else MAMMOGRAM
    if modality == HISTOLOGY:  # by BitsStored, as a large stack's frames read lazily are
        pixels = scale_to_uint8(pixels, dicom_bits(ds))
        pixels = stack_to_rgb_uint8(pixels) if stacked else to_rgb_uint8(pixels)
    elif pixels.ndim != 2 + stacked:
        raise ImageReadError(f"{path}: unsupported DICOM pixel array shape {pixels.shape}")
    return dicom_loaded(ds, path, pixels, modality, facts)


def dicom_loaded(
    ds: Any, path: Path, pixels: Any, modality: str, facts: dict[str, Any]
) -> LoadedImage:
    """The ``LoadedImage`` of a DICOM's display-ready ``pixels`` (decoded, or a lazy stack):
    its tags, ``PixelSpacing`` (mm) as the scale (none stated: its name's, by the readers'
    one order, ``_core.file_scale``) and a stack's frame spacing, one rule for every DICOM
    image the plugin opens."""
    frames = int(facts.get("frames", 1))
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
    scale, sizes = spacing or (1.0, 1.0), {}
    if spacing is not None:
        metadata["pixel_spacing_mm"] = list(spacing)
    else:  # none stated: the size its name documents (a mini-MIAS film saved as DICOM)
        scale, sizes = file_scale(path, modality, pixels.shape[int(frames > 1) :][:2])
        metadata.update(sizes)
    metadata["original_shape"] = list(pixels.shape)
    between = frame_spacing_mm(ds) if frames > 1 else None
    if between is not None:
        metadata["frame_spacing_mm"] = between
    return LoadedImage(
        pixels,
        [pixels],
        modality,
        metadata,
        scale,
        path,
        um_per_px=sizes.get("um_per_px"),
        frames=frames,
        frame_spacing_mm=between,
    )
