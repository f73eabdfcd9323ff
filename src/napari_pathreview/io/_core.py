"""What every reader shares: ``LoadedImage``, the modalities and the pixel contract.

Readers (:mod:`.raster`, :mod:`.slides`, :mod:`.mammograms`, :mod:`.wsi`) import this module
and nothing of each other; :mod:`.images` dispatches to them by suffix. Keeping the shared
part here is what keeps the io package free of import cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.io.alpha import has_alpha, over_glass
from napari_pathreview.io.breakhis import parse_breakhis_name
from napari_pathreview.io.colour_depth import scale_to_uint8
from napari_pathreview.io.frames import stack_name
from napari_pathreview.io.mias import (
    find_mias_annotations,
    mias_metadata,
    mias_refnum,
    mias_woman,
)
from napari_pathreview.io.named_size import named_um_per_px
from napari_pathreview.io.tiff_physical import stated_sizes

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".pgm", ".pnm", ".bmp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".svs"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
OPENSLIDE_SUFFIXES = frozenset(
    {".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide", ".tif", ".tiff", ".svs"}
)
"""Everything OpenSlide reads by name (generic TIFFs and SVS go to tifffile first)."""
SLIDE_SUFFIXES = TIFF_SUFFIXES | OPENSLIDE_SUFFIXES
IMAGE_SUFFIXES = RASTER_SUFFIXES | SLIDE_SUFFIXES | DICOM_SUFFIXES
"""Every file suffix ``load_image`` opens: the one source other modules list formats from."""

HISTOLOGY = "histology"
MAMMOGRAM = "mammogram"

SIZE_SOURCE = "um_per_px_source"
"""``metadata["pathreview"]`` key: where a pixel size came from when the file does not state it:
:data:`FROM_NAME` (a dataset's documented size for a file named like its images) or ``"user"``
(``--mpp``, the Analyze dock). Absent: the file states it (or none is known)."""
FROM_NAME = "file name"


@dataclass(frozen=True)
class LoadedImage:
    """An opened image and what its file said about it.

    Attributes:
        data: Level 0: RGB uint8 H×W×3 (histology) or grayscale H×W uint8/uint16
            (mammogram). For pyramidal files a lazy array (dask), never read whole.
        levels: All resolution levels, largest first; length 1 for plain images.
        modality: "histology" or "mammogram".
        metadata: JSON-able file facts; readers put it under ``layer.metadata["pathreview"]``.
        scale: (row, col) pixel spacing of level 0: µm for histology when the file (or
            the dataset) states it, mm for DICOM mammograms, else 1.0 (pixels).
        path: The file that was read.
        um_per_px: Level-0 pixel size in µm (histology), None when unknown.
        slide: The open :class:`~napari_pathreview.io.wsi.SlideSource` behind a whole
            slide (regions at any level, associated images), None for plain images.
        frames: How many frames a stack holds (tomosynthesis, a multi-frame TIFF or colour
            DICOM); ``data`` is then frames×H×W (grey) or frames×H×W×3 (RGB) and ``scale``
            stays the frames' (row, col) spacing. 1 for a single image (see :mod:`.frames`).
        frame_spacing_mm: Distance between a stack's frames (mm) when the file states it.
    """

    data: Any
    levels: list[Any]
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    scale: tuple[float, float] = (1.0, 1.0)
    path: Path | None = None
    um_per_px: float | None = None
    slide: Any = None
    frames: int = 1
    frame_spacing_mm: float | None = None

    @property
    def multiscale(self) -> bool:
        """True when the image has several resolution levels (a slide pyramid)."""
        return len(self.levels) > 1

    @property
    def scale_unit(self) -> str:
        """The unit of ``scale``: "µm", "mm" or "pixel"."""
        if self.um_per_px:
            return "µm"
        if "pixel_spacing_mm" in self.metadata:
            return "mm"
        return "pixel"

    @property
    def name(self) -> str:
        """The image layer's name: the file name without its suffix (and, for a stack, how
        many frames it holds)."""
        stem = (self.path or Path("image")).stem
        return stack_name(stem, self.frames) if self.frames > 1 else stem

    @property
    def layer_frame(self) -> dict[str, Any]:
        """``scale`` and, when physical, napari ``units`` of a layer drawn on this image.

        The image layer and anything placed on it (e.g. a QuPath GeoJSON beside the file)
        take this, so they share one world: µm for histology, mm for mammograms.
        """
        unit = {"µm": "um", "mm": "mm"}.get(self.scale_unit)
        return {"scale": self.scale, **({"units": (unit, unit)} if unit else {})}


def is_supported_image(path: str | Path) -> bool:
    """True for file suffixes ``load_image`` can open."""
    return Path(str(path)).suffix.lower() in IMAGE_SUFFIXES


def has_dicom_preamble(path: Path) -> bool:
    """DICOM Part 10 files carry "DICM" at byte 128, whatever their name."""
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm`` name, or the DICM preamble of a PACS export named ``IM0001``, as the reader
    finds DICOM; an unreadable file is not (the reader says why)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        return path.is_file() and has_dicom_preamble(path)
    except OSError:
        return False


def _bit_depth_max(array: np.ndarray) -> float:
    """The full-scale value of an unsigned integer image: 2**bits - 1 for the bits in use.

    A 12-bit mammogram stored as uint16 is scaled by 4095, not 65535, so it is not
    rendered nearly black; 8-bit content in a uint16 container stays as bright as it was.
    """
    peak = int(array.max()) if array.size else 0
    bits = max(8, math.ceil(math.log2(peak + 1))) if peak > 0 else 8
    return float(2**bits - 1)


def _gray_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale one channel (any numeric dtype) to uint8, deliberately per dtype."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.unsignedinteger):
        scaled = array.astype(np.float64) * (255.0 / _bit_depth_max(array))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("image holds NaN or infinite values; cannot convert to uint8")
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    if low >= 0.0 and high <= 255.0:
        # 8-bit levels in a wider container (a float32 or int16 TIFF, an array saved by
        # numpy): read them as uint8 would be, so the image keeps its brightness
        return np.rint(values).astype(np.uint8)
    if high <= low:  # constant signed/float image: mid-grey carries no information anyway
        return np.zeros(array.shape, dtype=np.uint8)
    return np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def to_rgb_uint8(array: Any) -> np.ndarray:
    """Convert any 2-D image to RGB uint8 H×W×3, the input every model expects.

    Grayscale (H×W or H×W×1) is replicated to three channels; grey+alpha and RGBA are
    composited on white (:func:`.alpha.over_glass`: slide glass is white, so transparent
    corners of a tile do not read as tissue); uint16 is rescaled by its bit depth; float in
    [0, 1] is ×255; other float and signed-integer values within [0, 255] are read as 8-bit
    levels (rounded), any other range is min-max scaled.

    Raises:
        InvalidInputError: The array is not H×W, H×W×1, H×W×2, H×W×3 or H×W×4, or holds NaN.
    """
    image = np.asarray(array)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise InvalidInputError(
            f"expected an image shaped H×W, H×W×1, H×W×3 or H×W×4, got {image.shape}"
        )
    alpha = has_alpha(image.shape[-1])
    colour = image[..., :-1] if alpha else image
    colour8 = _gray_to_uint8(colour)  # all channels scaled together: keeps the colour balance
    if alpha:  # onto white glass, the one rule every read follows (:mod:`.alpha`)
        colour8 = over_glass(colour8, _gray_to_uint8(image[..., -1]))
    if colour8.shape[-1] == 1:
        colour8 = np.repeat(colour8, 3, axis=-1)
    return np.ascontiguousarray(colour8)


def stack_to_rgb_uint8(stack: Any) -> np.ndarray:
    """A stack of colour frames (frames×H×W×S) as RGB uint8, converted as one image by
    :func:`to_rgb_uint8` (frames laid end to end), so every frame is scaled alike."""
    frames = np.asarray(stack)
    if frames.ndim != 4:
        raise InvalidInputError(f"expected a stack shaped frames×H×W×S, got {frames.shape}")
    count, height = frames.shape[:2]
    tall = to_rgb_uint8(frames.reshape(count * height, *frames.shape[2:]))
    return tall.reshape(count, height, *tall.shape[1:])


GREY_SAMPLE_PIXELS = 1 << 20
""":func:`grey_in_colour` looks at an even grid of at most this many pixels."""


def modality_of(array_shape: tuple[int, ...], path: Path, pixels: Any = None) -> str:
    """Colour → histology; single channel, or colour whose channels are equal (``pixels``
    given: :func:`grey_in_colour`) → mammogram; BreaKHis names are always histology."""
    if parse_breakhis_name(path.name) is not None:
        return HISTOLOGY
    if len(array_shape) == 2 or (len(array_shape) == 3 and array_shape[-1] in (1, 2)):
        return MAMMOGRAM
    if pixels is not None and grey_in_colour(pixels):
        return MAMMOGRAM
    return HISTOLOGY


def grey_in_colour(pixels: Any) -> bool:
    """Whether an RGB(A) image holds grey content: R, G and B equal (a film saved as colour).

    The one rule for the plugin's reader and for layers napari's own reader made. It is judged
    on an even grid of at most :data:`GREY_SAMPLE_PIXELS` pixels, so lazy (dask, zarr) data is
    read only that far; an image of one value throughout (a blank tile) shows no content and
    keeps its colour reading.
    """
    shape = tuple(getattr(pixels, "shape", ()))
    if len(shape) != 3 or shape[-1] not in (3, 4) or min(shape[:2]) < 1:
        return False
    step = max(1, math.ceil(math.sqrt(shape[0] * shape[1] / GREY_SAMPLE_PIXELS)))
    sample = np.asarray(pixels[::step, ::step, :3])
    red = sample[..., 0]
    equal = np.array_equal(red, sample[..., 1]) and np.array_equal(red, sample[..., 2])
    return bool(equal and red.min() != red.max())


def normalize_pixels(array: np.ndarray, modality: str) -> np.ndarray:
    """Bring decoded pixels to the contract: RGB uint8 histology, grey uint8/uint16 mammograms."""
    if modality == HISTOLOGY:
        return to_rgb_uint8(array)
    if array.ndim == 3:
        # grey + alpha: composite on white and keep one channel; otherwise the first channel
        array = to_rgb_uint8(array)[..., 0] if array.shape[-1] == 2 else array[..., 0]
    return _grey_levels(array)


def _grey_levels(array: np.ndarray) -> np.ndarray:
    """Grey pixels (an image or a stack of frames, scaled as one) as uint8 or uint16."""
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.unsignedinteger) and array.max() <= 65535:
        return array.astype(np.uint16)
    return _gray_to_uint8(array)


def base_metadata(path: Path, modality: str) -> dict[str, Any]:
    """``metadata["pathreview"]`` common part plus what the file name or neighbours say."""
    metadata: dict[str, Any] = {"modality": modality, "source_path": str(path.resolve())}
    info = parse_breakhis_name(path.name)
    if info is not None:
        metadata.update(info.as_metadata())
    if mias_refnum(path) is not None:
        annotations = find_mias_annotations(path)
        if annotations:
            metadata.update(mias_metadata(annotations))
        else:
            refnum = mias_refnum(path)
            metadata.update(
                {"dataset": "MIAS", "refnum": refnum, "patient_id": str(mias_woman(refnum))}
            )
    return metadata


def file_scale(
    path: Path,
    modality: str,
    shape: tuple[int, ...],
    pixel_um: float | None = None,
    frame_um: float | None = None,
) -> tuple[tuple[float, float], dict[str, Any]]:
    """The (row, col) scale and metadata facts of an image of (rows, cols) ``shape``, by the one
    order every reader follows: the pixel size the file states (µm), else the size its dataset
    documents for its name at that size (:func:`.named_size.named_um_per_px`, recorded as
    :data:`FROM_NAME`), else pixels, (1, 1). Colour in µm, grey in mm
    (:func:`.tiff_physical.stated_sizes`); ``frame_um`` is a stack's step between frames."""
    named = None if pixel_um else named_um_per_px(path, shape, modality)
    scale, facts = stated_sizes(modality == HISTOLOGY, pixel_um or named, frame_um)
    if named:
        facts[SIZE_SOURCE] = FROM_NAME
    return scale, facts


def level0_um_per_px(loaded: LoadedImage) -> float | None:
    """Level 0's pixel size (µm) as the reader gave it: the file's (or the user's), else its
    name's (:func:`file_scale`); a mammogram's mm spacing is its column spacing, along the
    width. None when unknown. ``predict`` resamples from it, as the dock from the layer's."""
    if loaded.um_per_px:
        return float(loaded.um_per_px)
    spacing = loaded.metadata.get("pixel_spacing_mm")
    return float(spacing[-1]) * 1000.0 if spacing else None


def _stated_colour(array: np.ndarray, modality: str, bits: int | None) -> np.ndarray:
    """Colour (histology) and grey + alpha pixels brought to uint8 by the file's stated depth
    when given, as the lazy reads convert them before blending the alpha (:mod:`.alpha`)."""
    grey_alpha = array.ndim >= 3 and array.shape[-1] == 2
    return scale_to_uint8(array, bits) if (modality == HISTOLOGY or grey_alpha) and bits else array


def finish_loaded(
    path: Path,
    array: np.ndarray,
    extra: dict[str, Any] | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
    pixel_um: float | None = None,
    colour_bits: int | None = None,
) -> LoadedImage:
    """Build the ``LoadedImage`` of a fully decoded single-level image.

    Args:
        scale: The (row, col) size the file states, when the reader has it as a scale.
        pixel_um: The pixel size the file states (µm): the scale by the rule a stack's frames
            follow (:func:`.tiff_physical.stated_sizes`: µm for colour, mm for grey). Either
            wins over the size a dataset documents for the file's name (:func:`file_scale`).
        colour_bits: The depth the file states (:mod:`.colour_depth`): 16-bit colour scales
            by it, as the file's lazy reads do; None: by the bits its values use.
    """
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise ImageReadError(f"{path}: not a 2-D image (array shape {array.shape})")
    modality = modality_of(array.shape, path, array)
    try:
        pixels = normalize_pixels(_stated_colour(array, modality, colour_bits), modality)
    except InvalidInputError as error:
        raise ImageReadError(f"{path}: {error}") from error
    metadata = base_metadata(path, modality)
    metadata["original_dtype"] = str(array.dtype)
    metadata["original_shape"] = list(array.shape)
    metadata.update(extra or {})
    if scale == (1.0, 1.0):  # none given as a scale: the file's µm, else its name's
        scale, sizes = file_scale(path, modality, pixels.shape[:2], pixel_um)
        metadata.update(sizes)
    um_per_px = metadata.get("um_per_px") if modality == HISTOLOGY else None
    return LoadedImage(pixels, [pixels], modality, metadata, scale, path, um_per_px)


def finish_stack(
    path: Path,
    stack: np.ndarray,
    extra: dict[str, Any] | None = None,
    frame_step_um: float | None = None,
    pixel_um: float | None = None,
    colour_bits: int | None = None,
) -> LoadedImage:
    """Build the ``LoadedImage`` of a decoded stack of frames: grey (frames×H×W, or ×S for
    frames saved as colour whose R = G = B) or colour (histology: frames×H×W×3 RGB), its
    frames scaled as one so every frame reads alike.

    Args:
        extra: File facts.
        frame_step_um: The distance between frames the file states (ImageJ, OME).
        pixel_um: The pixel size the file states (µm), the frames' scale
            (:func:`.tiff_physical.stated_sizes`).
        colour_bits: As :func:`finish_loaded`'s.
    """
    modality = modality_of(stack.shape[1:], path, stack[0])
    try:
        if modality == HISTOLOGY:
            pixels = stack_to_rgb_uint8(_stated_colour(stack, modality, colour_bits))
        elif stack.ndim == 4:
            stack = _stated_colour(stack, modality, colour_bits)
            pixels = _grey_levels(np.stack([normalize_pixels(frame, MAMMOGRAM) for frame in stack]))
        else:
            pixels = _grey_levels(stack)
    except InvalidInputError as error:
        raise ImageReadError(f"{path}: {error}") from error
    metadata = base_metadata(path, modality)
    metadata["original_dtype"] = str(stack.dtype)
    metadata["original_shape"] = list(stack.shape)
    metadata["frames"] = len(pixels)
    metadata.update(extra or {})
    scale, sizes = file_scale(path, modality, pixels.shape[1:3], pixel_um, frame_step_um)
    metadata.update(sizes)
    return LoadedImage(
        pixels,
        [pixels],
        modality,
        metadata,
        scale,
        path,
        um_per_px=sizes.get("um_per_px"),
        frames=len(pixels),
        frame_spacing_mm=sizes.get("frame_spacing_mm"),
    )


def check_pixel_size(um_per_px: Any, where: Any) -> float:
    """A user-given level-0 pixel size, checked by the one rule ``--mpp``, the Analyze dock's
    field and a saved session share: a positive finite number of µm.

    Raises:
        InvalidInputError: naming ``where`` (the file or layer) and the value.
    """
    number = isinstance(um_per_px, (int, float)) and not isinstance(um_per_px, bool)
    if not (number and math.isfinite(um_per_px) and um_per_px > 0):
        raise InvalidInputError(f"{where}: pixel size must be positive, got {um_per_px!r}")
    return float(um_per_px)
