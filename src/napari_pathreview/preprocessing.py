"""How a model sees an image: the one preprocessing specification training and inference share.

Like timm's data config, a :class:`PreprocessSpec` is resolved once (at registration, from the
recipe that trained the model) and stored on the model card; the training evaluation transform,
the ``Predictor`` and the slide engine all build their input from it. Nothing else re-derives
input size, resize rule, crop, interpolation, normalisation or physical resolution.

The pipeline, one function per step: :func:`to_canvas` (channel rule, intensity rule, crop,
resample to the trained-at resolution or stretch, pad) → stain normalisation of the canvas (the
card's normaliser) → :func:`window` (centre crop) → :func:`normalise`. Training caches canvases and
its evaluation transform takes the same window and normalisation, so a model is fed at
inference exactly as it was evaluated.

This module is neutral: it imports neither training, inference, widgets nor Qt (only ``io``,
lazily, to read the resolution datasets document in their file names). Finding the breast on a
mammogram, for the ``breast`` crop and intensity rules, is :mod:`~napari_pathreview.breast_region`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from napari_pathreview.breast_region import breast_box, stretch_breast
from napari_pathreview.errors import InvalidInputError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

RESIZE_RATIO: float = 8 / 7
"""Default resize-then-centre-crop ratio (the ImageNet evaluation convention: 256 → 224)."""

CROP_MODES: tuple[str, ...] = ("none", "breast")
PADDINGS: tuple[str, ...] = ("constant", "reflect")
INTERPOLATIONS: tuple[str, ...] = ("area", "bilinear", "bicubic", "nearest")
CHANNEL_MODES: tuple[str, ...] = ("rgb", "grey_to_rgb", "grey")
INTENSITY_MODES: tuple[str, ...] = ("none", "breast")
PIXEL_UNITS: tuple[str, ...] = ("um", "mm")
_UM_PER_UNIT: dict[str, float] = {"um": 1.0, "mm": 1000.0}


class PreprocessSpecError(InvalidInputError):
    """A preprocessing specification field is missing, unknown or out of range (names it)."""


def default_resize(image_size: int) -> int:
    """The square side an image is resized to before the centre crop to ``image_size``."""
    return max(int(image_size), round(int(image_size) * RESIZE_RATIO))


def centre_offset(outer: Sequence[int], inner: Sequence[int]) -> tuple[int, int]:
    """(top, left) of an ``inner`` (H, W) centred in ``outer`` (negative: it overhangs).

    Odd margins put the extra pixel at the bottom/right either way: a crop cuts
    ``(inner - outer) // 2`` from the top, a pad adds ``(outer - inner) // 2`` there.
    """

    def one(o: int, i: int) -> int:
        return (o - i) // 2 if o >= i else -((i - o) // 2)

    return one(int(outer[0]), int(inner[0])), one(int(outer[1]), int(inner[1]))


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a decoded image into the tensor a model was trained on.

    Attributes:
        input_size: (C, H, W) the network takes.
        resize: Square side images are resized to before a centre crop to (H, W); None
            resizes straight to (H, W).
        crop: "none", or "breast" (crop a mammogram to the breast's bounding box first).
        interpolation: Resampling when shrinking ("area" = OpenCV INTER_AREA); enlarging is
            always bilinear.
        mean: Per-channel mean after scaling pixels to [0, 1].
        std: Per-channel standard deviation (all > 0).
        channels: "rgb" (colour in), "grey_to_rgb" (grey replicated to 3 channels),
            "grey" (one channel: the mean of RGB).
        pixel_size: Physical size of one pixel of the network input (after resize and crop):
            the resolution the model was trained at. A slide is tiled so that a tile of
            H×W input pixels covers H·pixel_size × W·pixel_size. None when unknown.
        pixel_unit: "um" (histology) or "mm" (mammograms).
        intensity: "none", or "breast" (stretch each mammogram's breast grey levels to one
            range, :func:`normalise_intensity`: films differ in exposure and development).
        padding: How an image resampled to ``pixel_size`` that is smaller than the canvas is
            padded: "constant" (black: mammogram background) or "reflect" (tissue texture).
        stain_method: "none", "reinhard", "macenko" or "vahadane".
        stain_target: The fitted normaliser state (``normalizer.to_dict()``) or None.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: int | None = None
    crop: str = "none"
    interpolation: str = "area"
    channels: str = "rgb"
    pixel_size: float | None = None
    pixel_unit: str = "um"
    intensity: str = "none"
    padding: str = "constant"
    stain_method: str = "none"
    stain_target: dict | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 3 or min(size) <= 0:
            raise PreprocessSpecError(
                f"preprocessing 'input_size' must be (C, H, W) > 0, got {size}"
            )
        set_(self, "input_size", size)
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != size[0] or not all(math.isfinite(v) for v in values):
                raise PreprocessSpecError(
                    f"preprocessing {name!r} needs {size[0]} finite values, got {values}"
                )
            set_(self, name, values)
        if min(self.std) <= 0:
            raise PreprocessSpecError(f"preprocessing 'std' must be positive, got {self.std}")
        if self.resize is not None and int(self.resize) < max(size[1:]):
            raise PreprocessSpecError(
                f"preprocessing 'resize' {self.resize} is smaller than the input {size[1:]}"
            )
        for name, allowed in (
            ("crop", CROP_MODES),
            ("interpolation", INTERPOLATIONS),
            ("channels", CHANNEL_MODES),
            ("pixel_unit", PIXEL_UNITS),
            ("intensity", INTENSITY_MODES),
            ("padding", PADDINGS),
        ):
            if getattr(self, name) not in allowed:
                raise PreprocessSpecError(
                    f"preprocessing {name!r} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if (size[0] == 1) != (self.channels == "grey"):
            raise PreprocessSpecError(
                f"preprocessing 'channels' {self.channels!r} does not fit a {size[0]}-channel input"
            )
        if self.stain_target is not None and not isinstance(self.stain_target, Mapping):
            raise PreprocessSpecError("preprocessing 'stain_target' must be a mapping or None")
        if self.pixel_size is not None:
            value = float(self.pixel_size)
            if not math.isfinite(value) or value <= 0:
                raise PreprocessSpecError(
                    f"preprocessing 'pixel_size' must be a positive number, got {self.pixel_size}"
                )
            set_(self, "pixel_size", value)

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the network input."""
        return self.input_size[1], self.input_size[2]

    @property
    def canvas_hw(self) -> tuple[int, int]:
        """(H, W) an image is fitted to before the centre crop: the resize square, else (H, W)."""
        return (self.resize, self.resize) if self.resize is not None else self.hw

    @property
    def input_window(self) -> tuple[int, int, int, int]:
        """(top, left, H, W) of the network input inside the canvas: the centre crop."""
        top, left = centre_offset(self.canvas_hw, self.hw)
        return top, left, self.hw[0], self.hw[1]

    def uncropped(self) -> PreprocessSpec:
        """The same spec without the centre crop: the network sees the whole canvas.

        Convolutional models accept it, so their CAMs cover the entire image instead of
        leaving a blank border where the evaluation crop cut the image away.
        """
        if self.resize is None:
            return self
        size = (self.input_size[0], self.resize, self.resize)
        return replace(self, input_size=size, resize=None)

    @property
    def um_per_px(self) -> float | None:
        """The trained-at resolution in µm per pixel (mm specs converted), None if unknown."""
        if self.pixel_size is None:
            return None
        return self.pixel_size * _UM_PER_UNIT[self.pixel_unit]

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict (tuples become lists)."""
        data = asdict(self)
        for name in ("input_size", "mean", "std"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """Build and validate a spec; unknown keys are refused (they are usually typos)."""
        if not isinstance(data, Mapping):
            raise PreprocessSpecError(
                f"a preprocessing spec must be a mapping, got {type(data).__name__}"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreprocessSpecError(
                f"unknown preprocessing field(s) {unknown}; known fields: {sorted(known)}"
            )
        if "input_size" not in data:
            raise PreprocessSpecError("preprocessing spec is missing 'input_size'")
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as error:
            raise PreprocessSpecError(f"invalid preprocessing spec: {error}") from error


# -- the one pipeline: image → canvas (crop, resample, pad) → centre window → normalised tensor --


@dataclass(frozen=True)
class Placement:
    """Where the network input came from in a source image (to map CAMs back onto it).

    Attributes:
        box: (r0, r1, c0, c1) of the source image used (all of it, or the breast).
        scaled: (h, w) the box was resampled to.
        offset: Top-left of the resampled box inside the canvas (negative: cut away).
        canvas: (H, W) of the canvas.
        window: (top, left, H, W) of the network input inside the canvas.
    """

    box: tuple[int, int, int, int]
    scaled: tuple[int, int]
    offset: tuple[int, int]
    canvas: tuple[int, int]
    window: tuple[int, int, int, int]


def normalise_intensity(image: np.ndarray, mode: str) -> np.ndarray:
    """A uint8 image with the spec's intensity rule applied: "none" leaves it unchanged,
    "breast" stretches the breast's grey levels to one range
    (:func:`~napari_pathreview.breast_region.stretch_breast`)."""
    if mode == "none":
        return image
    if mode != "breast":
        raise PreprocessSpecError(f"preprocessing 'intensity' must be one of {INTENSITY_MODES}")
    return stretch_breast(image)


def check_tileable(spec: PreprocessSpec, model: str) -> None:
    """Refuse to feed ``model`` tiles when its preprocessing needs the whole image.

    The "breast" intensity rule takes its percentiles from a whole mammogram; applied to each
    tile of a slide or a large image it would stretch every tile differently.
    """
    if spec.intensity != "none":
        raise InvalidInputError(
            f"model {model} applies the {spec.intensity!r} intensity rule to whole mammograms "
            "(preprocess.intensity) and cannot analyse an image tile by tile; analyse the "
            "whole image instead"
        )


def crop_box(image: np.ndarray, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """The part (r0, r1, c0, c1) of ``image`` the model looks at: all, or the breast."""
    if spec.crop == "breast":
        return breast_box(image[..., 0] if image.ndim == 3 else image)
    return 0, image.shape[0], 0, image.shape[1]


def source_um_per_px(loaded: Any, width: int) -> float | None:
    """The physical pixel size (µm) of a ``LoadedImage`` as decoded at ``width`` pixels, or None.

    The size the reader gave its level 0 (``io._core.level0_um_per_px``: the size the file
    states or the user gave, else the one its BreaKHis or mini-MIAS name documents at its
    width, ``io.named_size``), scaled to ``width``: the size napari shows, and the Analyze
    dock resamples from. Never guessed.
    """
    from napari_pathreview.io._core import level0_um_per_px

    size = level0_um_per_px(loaded)
    return size * loaded.levels[0].shape[1] / width if size else None


def plan(
    image_shape: tuple[int, ...],
    box: tuple[int, int, int, int],
    spec: PreprocessSpec,
    um_per_px: float | None = None,
) -> Placement:
    """How the box of an image is laid on the canvas.

    With a known source resolution and a spec with ``pixel_size`` the box is resampled to the
    spec's resolution keeping its aspect ratio and centred on the canvas (cut or padded), so
    one network pixel always covers ``pixel_size``. Otherwise the box is stretched to the
    canvas (the resolution then depends on the image, as for first-wave models).
    """
    canvas = spec.canvas_hw
    h, w = box[1] - box[0], box[3] - box[2]
    if spec.um_per_px is not None and um_per_px:
        factor = float(um_per_px) / spec.um_per_px
        scaled = (max(1, round(h * factor)), max(1, round(w * factor)))
        offset = centre_offset(canvas, scaled)
    else:
        scaled, offset = canvas, (0, 0)
    return Placement(tuple(int(v) for v in box), scaled, offset, canvas, spec.input_window)


#: An image whose smaller side is under this many pixels holds no structure to classify.
MIN_IMAGE_SIDE: int = 8
#: Enlarging an image more than this for the network makes it read an interpolated blur.
MAX_UPSAMPLING: float = 4.0


def size_warning(placement: Placement, spec: PreprocessSpec, what: str = "the image") -> str | None:
    """The one size rule for classification: refuse a meaningless image, warn on heavy upsampling.

    The factor is what :func:`plan` does to the image: the stretch to the model's canvas, or the
    resampling to the card's µm/px when both resolutions are known.

    Raises:
        InvalidInputError: the image's smaller side is under ``MIN_IMAGE_SIDE`` pixels.
    """
    r0, r1, c0, c1 = placement.box
    h, w = r1 - r0, c1 - c0
    if min(h, w) < MIN_IMAGE_SIDE:
        raise InvalidInputError(
            f"{what} is {h}×{w} px: too small to classify (under {MIN_IMAGE_SIDE} px a side the "
            f"model's {spec.hw[0]}×{spec.hw[1]} input would be interpolation only); open the "
            "full-resolution image or a larger region."
        )
    factor = max(placement.scaled[0] / h, placement.scaled[1] / w)
    if factor <= MAX_UPSAMPLING:
        return None
    why = f"the model's {spec.hw[0]}×{spec.hw[1]} input"
    if placement.scaled != placement.canvas:  # resampled to the card's physical resolution
        why = f"the card's {spec.pixel_size:g} {spec.pixel_unit}/px"
    return f"heavily upsampled ({h}×{w} px enlarged {factor:.0f}× to {why}): the model reads blur"


def resample(image: np.ndarray, hw: tuple[int, int], interpolation: str = "area") -> np.ndarray:
    """``image`` resized to (H, W); "area" shrinks with INTER_AREA and enlarges bilinearly."""
    import cv2

    if image.shape[:2] == tuple(hw):
        return image
    shrink = image.shape[0] * image.shape[1] > hw[0] * hw[1]
    flags = {
        "area": cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        "bilinear": cv2.INTER_LINEAR,
        "bicubic": cv2.INTER_CUBIC,
        "nearest": cv2.INTER_NEAREST,
    }
    return cv2.resize(image, (hw[1], hw[0]), interpolation=flags[interpolation])


def _channels(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """RGB uint8 as the spec's channel rule wants it: colour, or grey replicated to 3."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    grey_already = np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
        image[..., 0], image[..., 2]
    )
    if spec.channels == "rgb" or grey_already:
        return image
    grey = np.rint(image.astype(np.float32).mean(axis=2)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def to_canvas(
    image: np.ndarray, spec: PreprocessSpec, um_per_px: float | None = None
) -> tuple[np.ndarray, Placement]:
    """RGB uint8 image → the uint8 canvas (intensity, crop, resample, pad) and its placement.

    Training caches this canvas (random crops come from it); evaluation and inference take
    its centre window (:func:`window`). Stain normalisation runs on the canvas in both.
    """
    import cv2

    image = normalise_intensity(_channels(image, spec), spec.intensity)
    box = crop_box(image, spec)
    placement = plan(image.shape, box, spec, um_per_px)
    region = resample(image[box[0] : box[1], box[2] : box[3]], placement.scaled, spec.interpolation)
    (ch, cw), (oy, ox), (sh, sw) = placement.canvas, placement.offset, placement.scaled
    r0, c0, r1, c1 = max(0, -oy), max(0, -ox), min(sh, ch - oy), min(sw, cw - ox)
    part = region[r0:r1, c0:c1]
    top, left = max(oy, 0), max(ox, 0)
    bottom, right = ch - top - part.shape[0], cw - left - part.shape[1]
    if top or bottom or left or right:
        border = cv2.BORDER_REFLECT if spec.padding == "reflect" else cv2.BORDER_CONSTANT
        part = cv2.copyMakeBorder(part, top, bottom, left, right, border, value=(0, 0, 0))
    return np.ascontiguousarray(part), placement


def window(canvas: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The network input (uint8 H×W×3): the centre crop of a canvas."""
    top, left, h, w = spec.input_window
    return np.ascontiguousarray(canvas[top : top + h, left : left + w])


def normalise(batch: Any, spec: PreprocessSpec) -> Any:
    """uint8 N×3×H×W torch batch → float, scaled to [0, 1], standardised per channel.

    "grey" models take the first channel (the canvas is grey replicated already).
    """
    import torch

    x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
    if spec.channels == "grey":
        x = x[:, :1]
    elif x.shape[1] != spec.input_size[0]:
        raise PreprocessSpecError(f"model wants {spec.input_size[0]} channels, got {x.shape[1]}")
    mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def cam_to_image(cam: np.ndarray, placement: Placement, image_shape: tuple[int, ...]) -> np.ndarray:
    """A network-size CAM mapped back onto the source image (zeros where the model saw nothing)."""
    import cv2

    (ch, cw), (top, left, h, w) = placement.canvas, placement.window
    canvas = np.zeros((ch, cw), np.float32)
    canvas[top : top + h, left : left + w] = cam
    (oy, ox), (sh, sw) = placement.offset, placement.scaled
    scaled = np.zeros((sh, sw), np.float32)
    r0, c0 = max(0, -oy), max(0, -ox)
    r1, c1 = min(sh, ch - oy), min(sw, cw - ox)
    if r1 > r0 and c1 > c0:
        scaled[r0:r1, c0:c1] = canvas[r0 + oy : r1 + oy, c0 + ox : c1 + ox]
    box = placement.box
    out = np.zeros(image_shape[:2], np.float32)
    out[box[0] : box[1], box[2] : box[3]] = cv2.resize(
        scaled, (box[3] - box[2], box[1] - box[0]), interpolation=cv2.INTER_LINEAR
    )
    return np.clip(out, 0.0, 1.0)
