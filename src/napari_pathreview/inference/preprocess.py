"""From files and arrays to the batch a model expects: decode, stain choice, resize, normalise.

The steps follow the model card, so a model is always fed as it was trained: the card's input
size, mean/std, and stain method with its fitted target. Resizing happens on uint8 images
(OpenCV, area interpolation when shrinking) and stain normalisation on the resized uint8 batch
(the normalisers' batched torch path), so a 2048×1536 image costs one resize, not a full-size
colour transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from napari_pathreview.errors import InvalidInputError

__all__ = ["DecodedImage", "InputSpec", "decode", "pick_level", "resolve_stain", "to_batch"]


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its input, mirroring the evaluation transform it was trained with.

    Attributes:
        input_size: (C, H, W) the model sees.
        mean: Per-channel mean after scaling pixels to [0, 1].
        std: Per-channel standard deviation.
        resize: Square side images are resized to before a centre crop to (H, W), as
            training's evaluation transform does (``recipe.data.resize``, default H·8/7);
            None resizes straight to (H, W) (cards without a training recipe).
        crop: "breast" crops mammograms to the breast's bounding box first (``recipe.data.crop``).
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None
    crop: str = "none"

    @classmethod
    def from_card(cls, card: Any, model: Any = None) -> InputSpec:
        """The card's geometry (else the model's ``spec``) and its recipe's resize/crop."""
        spec = getattr(model, "spec", None)
        size = card.input_size or getattr(spec, "input_size", None) or (3, 224, 224)
        mean = card.mean or getattr(spec, "mean", None) or (0.485, 0.456, 0.406)
        std = card.std or getattr(spec, "std", None) or (0.229, 0.224, 0.225)
        data = (card.recipe or {}).get("data") if isinstance(card.recipe, dict) else None
        resize, crop = None, "none"
        if isinstance(data, dict) and data.get("image_size"):
            side = int(data["image_size"])
            resize = int(data.get("resize") or max(side, round(side * 8 / 7)))
            crop = str(data.get("crop") or "none")
        return cls(
            tuple(int(v) for v in size),
            tuple(map(float, mean)),
            tuple(map(float, std)),
            resize,
            crop,
        )

    @property
    def hw(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]

    def uncropped(self) -> InputSpec:
        """The same geometry without the centre crop: the whole resized square.

        Convolutional models accept it, so their CAMs cover the entire image instead of
        leaving a blank border where the evaluation crop cut the image away.
        """
        if self.resize is None:
            return self
        return replace(self, input_size=(self.input_size[0], self.resize, self.resize), resize=None)

    def box(self, image: np.ndarray) -> tuple[int, int, int, int]:
        """The part (r0, r1, c0, c1) of ``image`` the model looks at: all, or the breast."""
        if self.crop != "breast":
            return 0, image.shape[0], 0, image.shape[1]
        from napari_pathreview.training.datasets import breast_box

        return tuple(int(v) for v in breast_box(image[..., 0]))

    def fit(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The model-size uint8 image and the box (r0, r1, c0, c1) of ``image`` it was cut from."""
        box = self.box(image)
        image = image[box[0] : box[1], box[2] : box[3]]
        if self.resize is None:
            return resize_uint8(image, self.hw), box
        side = resize_uint8(image, (self.resize, self.resize))
        r0, c0 = (self.resize - self.hw[0]) // 2, (self.resize - self.hw[1]) // 2
        return np.ascontiguousarray(side[r0 : r0 + self.hw[0], c0 : c0 + self.hw[1]]), box

    def cam_to_image(
        self, cam: np.ndarray, image_shape: tuple[int, ...], box: tuple[int, int, int, int]
    ) -> np.ndarray:
        """A model-size CAM mapped back onto the image (zeros where the model saw nothing)."""
        if self.resize is not None:
            canvas = np.zeros((self.resize, self.resize), np.float32)
            r0, c0 = (self.resize - self.hw[0]) // 2, (self.resize - self.hw[1]) // 2
            canvas[r0 : r0 + self.hw[0], c0 : c0 + self.hw[1]] = cam
            cam = canvas
        out = np.zeros(image_shape[:2], np.float32)
        h, w = box[1] - box[0], box[3] - box[2]
        out[box[0] : box[1], box[2] : box[3]] = cv2.resize(
            cam, (w, h), interpolation=cv2.INTER_LINEAR
        )
        return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for QC and resizing: RGB uint8 H×W×3 and where it came from."""

    rgb: np.ndarray
    path: str | None


def pick_level(levels: Sequence[Any], min_side: int) -> Any:
    """The coarsest pyramid level whose shorter side still covers ``min_side`` pixels.

    Whole-image prediction of a slide never needs level 0: the model sees ``min_side`` pixels.
    """
    chosen = levels[0]
    for level in levels[1:]:
        if min(level.shape[:2]) >= min_side:
            chosen = level
    return chosen


def decode(item: Any, min_side: int = 0) -> DecodedImage:
    """An RGB uint8 image from a path, a ``LoadedImage`` or an array.

    Raises:
        ImageReadError: the file cannot be read (from ``io.load_image``).
        InvalidInputError: the array has an impossible shape.
    """
    from napari_pathreview.io import load_image, to_rgb_uint8

    path = None
    if isinstance(item, str | Path):
        path, item = str(item), load_image(item)
    if hasattr(item, "levels") and hasattr(item, "modality"):
        path = path or (str(item.path) if getattr(item, "path", None) else None)
        item = pick_level(item.levels, min_side) if len(item.levels) > 1 else item.data
    array = np.asarray(item)
    return DecodedImage(to_rgb_uint8(array), path)


def resize_uint8(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``image`` resized to (H, W): area interpolation when shrinking, bilinear when enlarging."""
    if image.shape[:2] == tuple(hw):
        return image
    shrink = image.shape[0] * image.shape[1] > hw[0] * hw[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (hw[1], hw[0]), interpolation=interp)


def to_batch(images: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """A uint8 N×3×H×W (channels_last) tensor of images fitted to the spec (not normalised)."""
    if not images:
        raise InvalidInputError("no images to batch")
    stacked = np.stack([spec.fit(image)[0] for image in images])
    # N×H×W×3 permuted to N×3×H×W is already the channels_last layout: no copy.
    return torch.from_numpy(stacked).permute(0, 3, 1, 2)


def normalise(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 (or [0, 1] float) N×3×H×W → float, scaled to [0, 1] and standardised per channel.

    Single-channel models (mammogram models built for grayscale) get the channel mean.
    """
    x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
    channels = spec.input_size[0]
    if channels == 1 and x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    elif channels != x.shape[1]:
        raise InvalidInputError(f"model wants {channels} channels, images have {x.shape[1]}")
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def resolve_stain(card: Any, stain: Any = None) -> Any:
    """The fitted normaliser to use: an explicit one, a method name, or the card's.

    Args:
        card: The model card (its ``stain_method`` and fitted ``stain_target``).
        stain: None (the card's), a method name, a ``to_dict()`` state, or a normaliser.

    Raises:
        InvalidInputError: a named method has no fitted target (the card's target is used
            when the card names the same method; Reinhard falls back to the BreaKHis preset).
    """
    from napari_pathreview import stain as stain_mod

    if stain is None:
        if card.stain_target:
            return stain_mod.normalizer_from_dict(card.stain_target)
        stain = card.stain_method or "none"
    if isinstance(stain, dict):
        return stain_mod.normalizer_from_dict(stain)
    if not isinstance(stain, str):
        return stain
    name = stain.lower()
    if card.stain_target and str(card.stain_target.get("method", "")).lower() == name:
        return stain_mod.normalizer_from_dict(card.stain_target)
    normalizer = stain_mod.get_normalizer(name)
    if name == "reinhard" and not normalizer.is_fitted:
        normalizer = stain_mod.normalizer_from_dict(stain_mod.REINHARD_BREAKHIS_PRESET)
    if not normalizer.is_fitted:
        raise InvalidInputError(
            f"stain method {name!r} needs a fitted target and the model card has none for it; "
            "fit one with `pathreview stain fit` and pass it, or use the card's method"
        )
    return normalizer
