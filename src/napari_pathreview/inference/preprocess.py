"""From files and arrays to the batch a model expects, as the card's preprocessing spec says.

The geometry (crop, resample to the trained-at resolution or stretch, pad, centre crop), the
channel rule and the normalisation are defined once, in :mod:`napari_pathreview.preprocessing`,
and training's evaluation transform uses the very same functions; this module adds what only
inference needs: decoding paths, pyramids and layers, and choosing the stain normaliser.
Stain normalisation runs on each uint8 canvas, as training applied it to its cached canvases.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_pathreview.errors import ArgumentError, InvalidInputError
from napari_pathreview.preprocessing import (
    Placement,
    PreprocessSpec,
    crop_box,
    normalise,
    plan,
    size_warning,
    source_um_per_px,
    to_canvas,
    window,
)

__all__ = [
    "DecodedImage",
    "StainTargetNeededError",
    "decode",
    "image_quality",
    "normalise",
    "pick_level",
    "resolve_stain",
    "size_check",
    "spec_for",
    "to_batch",
]

logger = logging.getLogger(__name__)


def spec_for(card: Any, model: Any = None) -> PreprocessSpec:
    """The card's preprocessing spec; a draft card without one takes the model's geometry."""
    spec = getattr(card, "preprocess", None)
    if spec is not None:
        return spec
    model_spec = getattr(model, "spec", None)
    size = card.input_size or getattr(model_spec, "input_size", None) or (3, 224, 224)
    kwargs = {"input_size": tuple(size)}
    for name in ("mean", "std"):
        value = getattr(card, name, None) or getattr(model_spec, name, None)
        if value is not None:
            kwargs[name] = tuple(value)
    if size[0] == 1:
        kwargs["channels"] = "grey"
    kwargs["stain_method"] = getattr(card, "stain_method", None) or "none"
    kwargs["stain_target"] = getattr(card, "stain_target", None)
    return PreprocessSpec(**kwargs)


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for QC and resizing: RGB uint8 H×W×3, where it came from, its µm/px."""

    rgb: np.ndarray
    path: str | None
    um_per_px: float | None = None
    source_shape: tuple[int, int] | None = None  # the file's level 0 (rows, cols): ROI pixels


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
    """An RGB uint8 image from a path, a ``LoadedImage`` or an array, with its µm/px if known.

    A pyramid (a slide) decoded whole is a low-resolution preview: its level is stretched to
    the model like an image of unknown resolution (``um_per_px`` None), never resampled up to
    the model's µm/px as a whole; the slide engine tiles slides at that resolution instead.

    Raises:
        ImageReadError: the file cannot be read (from ``io.load_image``).
        InvalidInputError: the array has an impossible shape.
    """
    from napari_pathreview.io import load_image, to_rgb_uint8

    path, loaded = None, None
    if isinstance(item, str | Path):
        path, item = str(item), load_image(item)
    if hasattr(item, "levels") and hasattr(item, "modality"):
        loaded = item
        path = path or (str(item.path) if getattr(item, "path", None) else None)
        item = pick_level(item.levels, min_side) if len(item.levels) > 1 else item.data
    rgb = to_rgb_uint8(np.asarray(item))
    known = loaded is not None and len(loaded.levels) == 1  # a pyramid's level: a preview
    resolution = source_um_per_px(loaded, rgb.shape[1]) if known else None
    source_shape = tuple(int(n) for n in loaded.levels[0].shape[:2]) if loaded else None
    return DecodedImage(rgb, path, resolution, source_shape)


def size_check(decoded: DecodedImage, spec: PreprocessSpec) -> str | None:
    """``preprocessing.size_warning`` for the image as ``spec`` lays it on the model's canvas.

    Raises:
        InvalidInputError: the image is too small to classify at all.
    """
    rgb = decoded.rgb
    placement = plan(rgb.shape, crop_box(rgb, spec), spec, decoded.um_per_px)
    return size_warning(placement, spec, decoded.path or "the image")


def image_quality(decoded: DecodedImage, spec: PreprocessSpec, config: Any = None) -> Any:
    """The QC verdict (``stain.QCResult``) on an image a model with ``spec`` is to read.

    ``stain.assess_quality`` under ``config`` (None: ``QCConfig()``), failed also when the
    model would enlarge the image heavily (:func:`size_check`): the one verdict prediction
    reports and training's ``data.qc`` keeps or drops by.

    Raises:
        InvalidInputError: the image is too small to classify at all.
    """
    from dataclasses import replace

    from napari_pathreview.stain import QCConfig, assess_quality

    upsampled = size_check(decoded, spec)
    qc = assess_quality(decoded.rgb, config if config is not None else QCConfig())
    if upsampled is None:
        return qc
    return replace(
        qc, passed=False, reasons=(*qc.reasons, upsampled), checks=(*qc.checks, "upsampled")
    )


def canvases(
    images: Sequence[np.ndarray],
    spec: PreprocessSpec,
    normalizer: Any = None,
    um_per_px: Sequence[float | None] | None = None,
) -> list[tuple[np.ndarray, Placement]]:
    """Each image on its uint8 canvas, stain-normalised when a normaliser is given."""
    out = []
    for i, image in enumerate(images):
        canvas, placement = to_canvas(image, spec, um_per_px[i] if um_per_px else None)
        if normalizer is not None:
            canvas = normalizer.transform(canvas)
        out.append((canvas, placement))
    return out


def to_batch(
    images: Sequence[np.ndarray],
    spec: PreprocessSpec,
    normalizer: Any = None,
    um_per_px: Sequence[float | None] | None = None,
) -> torch.Tensor:
    """A uint8 N×3×H×W (channels_last) tensor of images fitted to the spec (not normalised)."""
    if not images:
        raise InvalidInputError("no images to batch")
    fitted = [window(c, spec) for c, _ in canvases(images, spec, normalizer, um_per_px)]
    # N×H×W×3 permuted to N×3×H×W is already the channels_last layout: no copy.
    return torch.from_numpy(np.stack(fitted)).permute(0, 3, 1, 2)


class StainTargetNeededError(ArgumentError):
    """A stain method was asked for that needs a fitted target, and neither the call nor the
    model card supplies one. Python callers read the ``stain`` argument's spellings; a CLI
    re-raises it naming its ``--stain`` and ``--stain-target`` flags (``errors.reported_as``).
    """

    fields = ("stain", "stain_target")

    def __init__(self, method: str, from_card: bool) -> None:
        self.method, self.from_card = method, from_card
        super().__init__()

    def naming(self, names: Mapping[str, str]) -> str:
        if "stain_target" in names:  # a front end where the target is its own option
            stain = names.get("stain", "stain")
            target = f"{names['stain_target']} FILE.json"
            none, omit = f"{stain} none", f"leave out {stain}"
        else:
            target = "stain=load_target('FILE.json') (napari_pathreview.stain.targets)"
            none, omit = "stain='none'", "leave out stain"
        other = none if self.from_card else f"{omit} to use the card's method"
        return (
            f"stain method {self.method!r} needs a fitted target and the model card has none "
            f"for it; fit one with `pathreview stain fit --method {self.method} --images IMAGES "
            f"--out FILE.json` and pass {target}, or {other}"
        )


def resolve_stain(card: Any, stain: Any = None) -> Any:
    """The fitted normaliser to use: an explicit one, a method name, or the card's.

    Args:
        card: The model card (its spec's ``stain_method`` and fitted ``stain_target``).
        stain: None (the card's), a method name, a ``to_dict()`` state, or a normaliser.

    Raises:
        StainTargetNeededError: a named method has no fitted target (the card's target is used
            when the card names the same method; Reinhard falls back to the BreaKHis preset).
    """
    from napari_pathreview import stain as stain_mod

    spec = spec_for(card)
    from_card = stain is None
    if from_card:
        if spec.stain_target:
            return stain_mod.normalizer_from_dict(spec.stain_target)
        stain = spec.stain_method or "none"
    if isinstance(stain, dict):
        return stain_mod.normalizer_from_dict(stain)
    if not isinstance(stain, str):
        return stain
    name = stain.lower()
    if spec.stain_target and str(spec.stain_target.get("method", "")).lower() == name:
        return stain_mod.normalizer_from_dict(spec.stain_target)
    normalizer = stain_mod.get_normalizer(name)
    if name == "reinhard" and not normalizer.is_fitted:
        normalizer = stain_mod.normalizer_from_dict(stain_mod.REINHARD_BREAKHIS_PRESET)
    if not normalizer.is_fitted:
        raise StainTargetNeededError(name, from_card)
    return normalizer
