"""Lesion-aware training: ROI patches → patch encoder → cached embeddings → MIL head, per fold.

``pathreview train`` comes here when a recipe has ``lesion.enabled: true``. Per fold (patients
never cross folds: the split is made on images before any patch is drawn):

1. patches from the training part's ROIs and tissue (``patches.sample_patches``) train a
   ``PatchMIL`` (a bag of one patch is an instance) with the ordinary ``Trainer`` — or, on a
   ``lesion.frozen_encoder``, only its instance classifier (``probe``);
2. every image's patch grid is encoded once into ``foldK/embeddings.zarr``;
3. the MIL head (max / top-k / gated attention) trains on those bags in seconds — images with a
   label but no ROI take part here as weakly labelled bags;
4. the held-out images are scored: class probabilities (pooled out-of-fold over the folds,
   bootstrap CIs) and the patch-probability and attention maps against the ROIs (IoU/Dice with
   ``explain.metrics.roi_scores``, seed 004's protocol).

The fold with the best validation score — or, with ``register.select: ensemble``, the mean of all
folds' models — is registered as one ``patch_mil`` model that predicts whole images (and exposes
both maps as explanations).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_pathreview.training import datasets as ds
from napari_pathreview.training.lesion_scale import Resampling, resampling_of, training_pixel_size
from napari_pathreview.training.patches import (
    LesionImage,
    PatchSampling,
    check_classes_have_rois,
    geojson_rois,
    labels_rois_mask,
    rois_mask,
    sample_patches,
    tissue_mask,
    training_level,
)
from napari_pathreview.training.probe import (
    frozen_encoder_state,
    load_frozen_encoder,
    train_probe,
)
from napari_pathreview.training.recipe import Recipe, RecipeError

log = logging.getLogger(__name__)


def prepare_lesion_image(
    sample: ds.Sample,
    label: int,
    scale: float | Resampling,
    modality: str,
    intensity: str = "none",
) -> LesionImage:
    """Decode, apply the intensity rule, resample to the training resolution and rasterise
    the sample's ROIs (the order ``preprocessing.to_canvas`` follows at inference).

    ``scale``: the recipe's :class:`.lesion_scale.Resampling` (from the image's own pixel
    size, which it refuses naming the image when unknown), or training pixels per stored pixel.
    """
    import cv2

    from napari_pathreview.io import load_image, to_rgb_uint8
    from napari_pathreview.preprocessing import normalise_intensity

    where = Path(sample.path).name
    loaded = load_image(sample.path)
    if isinstance(scale, Resampling):
        scale = scale.scale(loaded, where)
    level, downsample = training_level(loaded.levels, scale, where)
    rgb = normalise_intensity(to_rgb_uint8(level), intensity)
    height, width = loaded.levels[0].shape[:2]  # ROIs are in these (level-0) pixels
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    if shape != rgb.shape[:2]:
        interpolation = cv2.INTER_AREA if scale * downsample < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, shape[::-1], interpolation=interpolation)
    text = str(sample.extra.get("roi_geojson") or "")
    rois = geojson_rois(text, Path(sample.path).parent, where) if text else list(sample.rois)
    mask = rois_mask(rois, shape, scale, where, source_shape=(height, width))
    if sample.extra.get("roi_mask"):
        base = Path(sample.path).parent
        path = Path(sample.extra["roi_mask"])
        mask |= labels_rois_mask(path if path.is_absolute() else base / path, shape, where)
    tissue = tissue_mask(rgb, modality)
    return LesionImage(
        sample.path,
        label,
        sample.patient_id,
        np.ascontiguousarray(rgb),
        mask,
        tissue,
        sample.weight,
    )


def build_patch_model(
    recipe: Recipe,
    num_classes: int,
    input_size: int,
    negative_class: int | None = None,
    members: int = 1,
    pretrained: bool | None = None,
):
    """The ``patch_mil`` model the recipe describes (architecture = the encoder, or patch_mil).

    ``negative_class`` (the index of lesion.negative_class) makes max / top-k pooling rank
    patches by lesion log-odds, so a bag of normal tissue can be decided "normal";
    ``members`` > 1 builds the fold ensemble that ``register.select: ensemble`` registers.
    ``pretrained=False`` for a model whose saved weights go in next (rescoring, registering):
    the recipe's pretrained weights need not be on this machine then.
    """
    from napari_pathreview.models import create_model
    from napari_pathreview.training.build import model_arguments

    cfg = recipe.lesion
    _, kwargs = model_arguments(recipe, pretrained)
    kwargs.update(
        patch_size=cfg.patch_size,
        stride=cfg.stride,
        pooling=cfg.pooling,
        topk=cfg.topk,
        input_size=int(input_size),
        modality_hint=recipe.modality,
    )
    if negative_class is not None and recipe.lesion.pooling != "attention":
        kwargs["negative_class"] = int(negative_class)
    if members > 1:
        kwargs["members"] = int(members)
    return create_model("patch_mil", num_classes, **kwargs)


def sampling_of(recipe: Recipe, seed: int) -> PatchSampling:
    cfg = recipe.lesion
    return PatchSampling(
        cfg.patch_size,
        cfg.context,
        cfg.positives_per_image,
        cfg.negatives_per_image,
        cfg.max_per_patient,
        cfg.margin,
        cfg.background_fraction,
        0.5,
        seed,
    )


def negative_index(recipe: Recipe, classes: Sequence[str]) -> int:
    name = recipe.lesion.negative_class
    if not name:
        return 0
    if name not in classes:
        raise RecipeError(f"lesion.negative_class: {name!r} is not one of {', '.join(classes)}")
    return list(classes).index(name)


def _negative_of(recipe: Recipe, classes: Sequence[str]) -> int | None:
    """The negative class's index when the recipe names one, else None (per-class pooling)."""
    return negative_index(recipe, classes) if recipe.lesion.negative_class else None


def _patch_dataset(patches) -> ds.ImageDataset:
    images = [ds.PreparedImage(p, ()) for p in patches.pixels]
    return ds.ImageDataset(images, patches.labels, patches.weights)


def _lesion_maps(model, images: Sequence[LesionImage], negative: int) -> list[np.ndarray]:
    """Each image's lesion-probability map from the current model (for hard-negative mining)."""
    from napari_pathreview.training.embeddings import PatchEncoder, encode_image
    from napari_pathreview.training.mil import grid_to_image, lesion_probability, predict_bags

    model.eval()  # BatchNorm statistics are read, never updated, by the mining pass
    encoder = PatchEncoder.of_patch_model("fold", model)
    maps = []
    for image in images:
        bag, grid = encode_image(encoder, image.pixels, model.patch_size, model.stride)
        patch = predict_bags(model.head, [bag]).patch_probs[0]
        maps.append(
            grid_to_image(
                lesion_probability(patch, negative),
                grid,
                image.pixels.shape[:2],
                model.patch_size,
                model.stride,
            )
        )
    return maps


def train_patch_classifier(
    recipe: Recipe,
    model,
    images: Sequence[LesionImage],
    part: dict,
    negative: int,
    num_classes: int,
    fold_dir: Path,
    device,
    progress: Callable[[dict], None] | None,
) -> dict:
    """Fit the instance classifier on ROI patches, over the hard-negative rounds.

    The encoder learns with it through the image ``Trainer``; a ``lesion.frozen_encoder``
    stays as loaded and only the classifier learns, as a probe over embeddings encoded once.
    """
    from napari_pathreview.training.losses import balanced_class_weights

    train_images = [images[i] for i in part["train"]]
    hard_maps = None
    summary: dict = {}
    for round_number in range(recipe.lesion.hard_negative_rounds + 1):
        seed = recipe.seed * 1000 + round_number
        train = sample_patches(train_images, sampling_of(recipe, seed), negative, hard_maps)
        val = sample_patches(
            [images[i] for i in part["val"]], sampling_of(recipe, seed + 1), negative
        )
        if len(train) == 0:
            raise RecipeError("no training patches: no ROI and no negative-class image in the fold")
        weights = balanced_class_weights(train.labels, num_classes)
        if recipe.lesion.frozen_encoder:
            fit = train_probe(recipe, model, train, val, weights, device)
        else:
            workdir = fold_dir / f"patches{round_number}"
            fit = _fit_encoder(
                recipe, model, train, val, num_classes, weights, workdir, device, progress
            )
        summary = {
            "patches": train.counts(),
            "val_patches": len(val),
            "patch_best_val_score": fit.best_score,
            "patch_history": fit.history,
        }
        if round_number < recipe.lesion.hard_negative_rounds:
            model.cpu()
            hard_maps = _lesion_maps(model, train_images, negative)
            model.to(device)
    return summary


def _fit_encoder(recipe, model, train, val, num_classes, weights, workdir, device, progress):
    """Encoder and classifier on the patches, with the recipe's augmentation and phases."""
    from napari_pathreview.training.trainer import Trainer

    patch_recipe = replace(recipe, data=replace(recipe.data, image_size=recipe.lesion.patch_size))
    trainer = Trainer(
        patch_recipe,
        model,
        _patch_dataset(train),
        _patch_dataset(val),
        num_classes,
        workdir,
        device,
        weights,
        progress,
    )
    trainer.resume()
    fit = trainer.fit()
    model.load_state_dict(fit.best_state)
    return fit


def run_fold(
    recipe: Recipe,
    images: Sequence[LesionImage],
    classes: Sequence[str],
    fold,
    index: int,
    run_dir: Path,
    device,
    progress: Callable[[dict], None] | None = None,
    rescore: bool = False,
    frozen_state: dict | None = None,
) -> dict:
    """Train and evaluate one fold; returns the fold's record (also written to fold.json).

    A finished fold is returned as it is, or with ``rescore`` scored again by the current code
    from its saved model and embeddings (no training): how a run is re-read after the scoring
    rules change.
    """
    from safetensors.torch import save_file

    from napari_pathreview.training.lesion_eval import evaluate_fold_maps
    from napari_pathreview.training.preparation import fit_fold_stain, stain_images

    fold_dir = run_dir / f"fold{index}"
    done = fold_dir / "fold.json"
    finished = json.loads(done.read_text()) if done.is_file() else None
    if finished is not None and not rescore:
        return finished
    fold_dir.mkdir(parents=True, exist_ok=True)
    part = {name: [int(i) for i in getattr(fold, name)] for name in ("train", "val", "test")}
    # the stain target is fitted on this fold's training images only, as in image training
    if finished is not None:
        stain_target = finished.get("stain_target")
    else:
        stain_target = fit_fold_stain(recipe, images, part["train"])
    images = stain_images(images, stain_target)
    negative = negative_index(recipe, classes)
    size = max(max(im.pixels.shape[:2]) for im in images)
    model = build_patch_model(
        recipe,
        len(classes),
        size,
        _negative_of(recipe, classes),
        pretrained=finished is None,  # as the recipe says; rescoring loads its own
    )
    if finished is not None:  # checked up front by _check_rescorable
        return _rescore_fold(recipe, model, images, part, negative, finished, done)
    record: dict = {"fold": index, "stain_target": stain_target}

    def report(entry: dict) -> None:
        if progress is not None:
            progress({"fold": index, "stage": "patches", **entry})

    if recipe.lesion.frozen_encoder:  # the run's copy, else (a fold trained by --rescore) read
        state = frozen_state if frozen_state is not None else frozen_encoder_state(recipe)
        load_frozen_encoder(recipe, model, state)
    record.update(
        train_patch_classifier(
            recipe, model, images, part, negative, len(classes), fold_dir, device, report
        )
    )
    model.cpu().eval()
    cache = _encode_fold(recipe, model, images, fold_dir)
    record.update(_fit_mil_head(recipe, model, images, cache, part, len(classes), index))
    record.update(evaluate_fold_maps(recipe, model, images, cache, part, negative))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(fold_dir / "selected.safetensors"))
    record["weights"] = "selected.safetensors"
    done.write_text(json.dumps(record, default=float))
    return record


def _rescore_fold(
    recipe: Recipe,
    model,
    images: Sequence[LesionImage],
    part: dict,
    negative: int,
    finished: dict,
    done: Path,
) -> dict:
    """Score a finished fold again from its saved weights and embedding store, no training:
    how a run is re-read after the scoring rules change."""
    from safetensors.torch import load_file

    from napari_pathreview.training.lesion_eval import evaluate_fold_maps

    fold_dir = done.parent
    model.load_state_dict(load_file(str(fold_dir / finished["weights"])))
    model.eval()
    cache = _encode_fold(recipe, model, images, fold_dir)  # the fold's own store, reused
    finished.pop("bilateral", None)  # present again only if the recipe still asks for it
    finished.update(evaluate_fold_maps(recipe, model, images, cache, part, negative))
    done.write_text(json.dumps(finished, default=float))
    return finished


def _fit_mil_head(
    recipe: Recipe,
    model,
    images: Sequence[LesionImage],
    cache,
    part: dict,
    n_classes: int,
    index: int,
) -> dict:
    """Train the MIL head on the fold's cached bags (after patch training): the fold record's
    ``mil_history`` and ``best_val_score``."""
    from napari_pathreview.training.losses import balanced_class_weights
    from napari_pathreview.training.mil import train_mil_head

    labels = np.asarray([im.label for im in images])
    tr, va = part["train"], part["val"]
    history = train_mil_head(
        model.head,
        [cache.bags[i] for i in tr],
        labels[tr],
        [cache.bags[i] for i in va],
        labels[va],
        [images[i].weight for i in tr],
        recipe.lesion.mil_epochs,
        recipe.lesion.mil_lr,
        class_weights=balanced_class_weights(labels[tr], n_classes),
        seed=recipe.seed + index,
        train_classifier=recipe.lesion.mil_train_classifier,
        metric=recipe.early_stopping.metric,
        mode=recipe.early_stopping.mode,
    )
    scores = [h["val_score"] for h in history if h.get("val_score") is not None]
    return {"mil_history": history, "best_val_score": max(scores) if scores else None}


def _encode_fold(recipe: Recipe, model, images: Sequence[LesionImage], fold_dir: Path):
    from napari_pathreview.training.embeddings import PatchEncoder, encode_to_zarr

    encoder = PatchEncoder.of_patch_model(
        recipe.lesion.frozen_encoder or f"{fold_dir.name}-patch-encoder", model
    )
    return encode_to_zarr(
        encoder,
        [im.pixels for im in images],
        [im.path for im in images],
        fold_dir / "embeddings.zarr",
        model.patch_size,
        model.stride,
        training_pixel_size(recipe),
    )


def run_lesion(
    recipe: Recipe,
    samples: Sequence[ds.Sample],
    run_dir: Path,
    device,
    progress: Callable[[dict], None] | None = None,
    registered_before: str | None = None,
    rescore: bool = False,
) -> tuple[dict, str | None]:
    """The whole lesion-aware run; returns (metrics, registered model ref or None).

    ``registered_before``: what a finished run that is being resumed registered; it is
    reported again instead of registering a duplicate version. ``rescore``: finished folds
    are scored again from their saved models (``run_fold``).
    """
    from napari_pathreview.training.lesion_eval import register_lesion_run, summarize_lesion_run
    from napari_pathreview.training.run_data import split_plan
    from napari_pathreview.training.splits import record_splits

    classes = ds.class_names(samples, recipe.data.task)
    frozen_state = None
    if recipe.lesion.frozen_encoder and not rescore:  # a wrong spec fails before images are read
        frozen_state = frozen_encoder_state(recipe)
        target = build_patch_model(recipe, len(classes), recipe.lesion.patch_size, pretrained=False)
        load_frozen_encoder(recipe, target, frozen_state)
    index = {name: i for i, name in enumerate(classes)}
    resampling = resampling_of(recipe)  # each image from its own pixel size
    images = [
        prepare_lesion_image(s, index[s.label], resampling, recipe.modality, recipe.data.intensity)
        for s in samples
    ]
    negative = negative_index(recipe, classes)
    check_classes_have_rois(images, classes, negative)
    plan = split_plan(recipe, samples, np.asarray([im.label for im in images]), classes)
    if rescore:
        _check_rescorable(run_dir, len(plan.folds))
    record_splits(plan, samples, run_dir / "splits.json")
    folds = [
        run_fold(recipe, images, classes, fold, i, run_dir, device, progress, rescore, frozen_state)
        for i, fold in enumerate(plan.folds)
    ]
    pixel_size = training_pixel_size(recipe)
    metrics = summarize_lesion_run(
        recipe, images, classes, plan, folds, run_dir, pixel_size, negative
    )
    registered = registered_before
    if registered is not None:
        log.info("this run was already registered as %s; not registering it again", registered)
        metrics["registered"] = registered
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    elif recipe.register.enabled:
        size = max(max(im.pixels.shape[:2]) for im in images)
        members = len(folds) if recipe.register.select == "ensemble" else 1
        model = build_patch_model(  # the folds' saved weights go in
            recipe, len(classes), size, _negative_of(recipe, classes), members, pretrained=False
        )
        registered = register_lesion_run(
            recipe, samples, classes, folds, metrics, run_dir, model, pixel_size, negative
        )
        metrics["registered"] = registered
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics, registered


def _check_rescorable(run_dir: Path, n_folds: int) -> None:
    """Every finished fold still has its saved model, before any fold.json is rewritten."""
    for index in range(n_folds):
        done = run_dir / f"fold{index}" / "fold.json"
        if not done.is_file():
            continue
        weights = done.parent / str(json.loads(done.read_text()).get("weights", ""))
        if not weights.is_file():
            raise RecipeError(f"--rescore: {weights} is missing; fold {index} cannot be re-scored")
