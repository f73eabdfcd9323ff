"""From a recipe to the preprocessing spec a fold trains with, and the fold's stain target.

The spec is resolved here, once: its geometry and physical resolution from the recipe (and
the images, when the recipe stretches images of one known size), its normalisation and
channels from the model, and its stain target fitted inside the fold. Every fold carries its
own spec; the registered card stores the chosen fold's, and nothing re-derives it later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from napari_pathreview.preprocessing import PreprocessSpec, default_resize
from napari_pathreview.training.datasets import PreparedImage, qc_config
from napari_pathreview.training.recipe import Recipe, RecipeError, resolve_path

log = logging.getLogger(__name__)

#: The stain target is fitted on at most this many of a fold's training images.
STAIN_FIT_IMAGES = 32


def base_spec(recipe: Recipe) -> PreprocessSpec:
    """The recipe's geometry: what every image is cached as, before the model is known.

    Mammograms keep their grey replicated to three channels and are padded black; histology
    is padded by reflection. ``pixel_size`` is the recipe's ``data.pixel_size`` (µm for
    histology, mm for mammograms) or, for stretching recipes, filled in later by
    :func:`with_measured_resolution`.
    """
    data = recipe.data
    size = data.image_size
    if data.pixel_size is not None and not data.pixel_size > 0:
        raise RecipeError(f"data.pixel_size must be a positive number, got {data.pixel_size}")
    mammogram = recipe.modality == "mammogram"
    return PreprocessSpec(
        input_size=(3, size, size),
        resize=data.resize or default_resize(size),
        crop=data.crop,
        channels="grey_to_rgb" if mammogram or data.grayscale else "rgb",
        pixel_size=data.pixel_size,
        pixel_unit="mm" if mammogram else "um",
        intensity=data.intensity,
        padding="constant" if mammogram else "reflect",
    )


def with_measured_resolution(
    spec: PreprocessSpec, prepared: Sequence[PreparedImage]
) -> PreprocessSpec:
    """A stretching spec with the resolution its images all share, when they share one.

    Stretching maps an image's box onto the canvas, so one network pixel covers
    ``um_per_px × box / canvas``: the same for every image only when all have one known
    resolution, one box size, and the box is stretched equally along both axes (MIAS:
    1024² at 200 µm/px). Otherwise the resolution depends on the image and stays None.
    """
    if spec.pixel_size is not None or not prepared:
        return spec
    sources, shapes = {p.um_per_px for p in prepared}, {p.box_hw for p in prepared}
    if len(sources) != 1 or None in sources or len(shapes) != 1:
        return spec
    (um,), ((h, w),) = sources, shapes
    canvas = spec.canvas_hw
    if h * canvas[1] != w * canvas[0]:
        return spec
    pixel_um = um * h / canvas[0]
    factor = 1000.0 if spec.pixel_unit == "mm" else 1.0
    return replace(spec, pixel_size=pixel_um / factor)


def fold_spec(
    base: PreprocessSpec, model: Any, stain_method: str, stain_target: dict | None
) -> PreprocessSpec:
    """The fold's full spec: the model's normalisation and channels, the fold's stain target."""
    model_spec = getattr(model, "spec", None)
    channels = model_spec.input_size[0] if model_spec is not None else 3
    kwargs: dict[str, Any] = {
        "input_size": (channels, *base.hw),
        "stain_method": stain_method if stain_target else "none",
        "stain_target": stain_target,
    }
    if model_spec is not None:
        kwargs.update(mean=model_spec.mean, std=model_spec.std)
    if channels == 1:
        kwargs["channels"] = "grey"
    return replace(base, **kwargs)


def fit_fold_stain(
    recipe: Recipe, prepared: Sequence[PreparedImage], train_idx: Sequence[int]
) -> dict | None:
    """The stain target of one fold (``normalizer.to_dict()``), or None without stain.

    A preset or a reference image gives every fold the same target; otherwise the target is
    fitted on the fold's own training images only (the first ``STAIN_FIT_IMAGES`` of them),
    so no validation or test image of the fold shapes the colours the model trains on.
    """
    from napari_pathreview.stain import (
        REINHARD_BREAKHIS_PRESET,
        get_normalizer,
        normalizer_from_dict,
    )

    method, target = recipe.data.stain, recipe.data.stain_target
    if method == "none":
        return None
    if target == "breakhis_preset":
        normalizer = normalizer_from_dict(dict(REINHARD_BREAKHIS_PRESET))
    elif target:
        from napari_pathreview.io import load_image, to_rgb_uint8

        image = to_rgb_uint8(load_image(resolve_path(recipe, target)).data)
        normalizer = get_normalizer(method).fit(image)
    else:
        chosen = list(train_idx)[:STAIN_FIT_IMAGES]
        normalizer = get_normalizer(method).fit([prepared[i].pixels for i in chosen])
    return normalizer.to_dict()


def stain_images(
    prepared: Sequence[PreparedImage], stain_target: dict | None
) -> list[PreparedImage]:
    """The canvases normalised to a target, as the card's normaliser will do at inference."""
    if stain_target is None:
        return list(prepared)
    from napari_pathreview.stain import normalizer_from_dict

    normalizer = normalizer_from_dict(stain_target)
    return [replace(p, pixels=normalizer.transform(p.pixels)) for p in prepared]


def qc_filter(recipe: Recipe, samples: list, prepared: list) -> tuple[list, list]:
    """Drop images failing QC (seed 001's blur/tissue rule), judged as prediction judges them.

    Each image is checked as decoded for the model (:func:`~.datasets.sample_quality`: blur and
    tissue at the recipe's ``data.qc_*``, and no more than 4× enlargement), not on its training
    canvas, so training keeps what ``pathreview predict`` and the Analyze dock pass and drops
    what they flag; every dropped image is logged with its reasons. An image prepared with the
    recipe's QC config (``prepare_all(..., qc=qc_config(recipe.data))``) keeps its verdict
    from that one decode; others are decoded again here.

    Raises:
        DatasetError: every image failed.
    """
    from napari_pathreview.training.datasets import DatasetError, sample_quality

    config, spec = qc_config(recipe.data), base_spec(recipe)
    keep = []
    for i, sample in enumerate(samples):
        verdict = prepared[i].qc
        result = verdict if verdict is not None else sample_quality(sample, spec, config)
        if result.passed:
            keep.append(i)
        else:
            log.warning("QC drops %s: %s", sample.path, "; ".join(result.reasons))
    log.info("QC kept %d of %d images", len(keep), len(samples))
    if not keep:
        raise DatasetError("every image failed QC; relax data.qc_* or disable data.qc")
    return [samples[i] for i in keep], [prepared[i] for i in keep]
