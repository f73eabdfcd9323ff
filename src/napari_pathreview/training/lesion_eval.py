"""Scoring and registering a lesion-aware run: pooled out-of-fold metrics, maps vs ROIs, card.

The maps are scored with the same protocol as the CAMs (``explain.metrics.roi_scores``:
min–max normalised, binarised at the threshold, IoU/Dice against the ROI mask), so the
patch-probability map, the attention map and seed 004's Grad-CAM figures are comparable.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_pathreview.training.lesion_diagnostics import (
    lesion_class_separation,
    lesion_detection,
)
from napari_pathreview.training.metrics import (
    compute_metrics,
    json_safe,
    pooled_threshold,
    youden_threshold,
)
from napari_pathreview.training.statistics import (
    Resampling,
    bootstrap_groups,
    bootstrap_report,
    centred_interval,
    population,
    summarize_folds,
)

if TYPE_CHECKING:
    from napari_pathreview.io.patients import FilmSide

log = logging.getLogger(__name__)
MAP_NAMES: tuple[str, ...] = ("patch_map", "attention_map")
# scored beside the model's maps: the ceiling that the patch size and stride leave
SCORED_MAPS: tuple[str, ...] = (*MAP_NAMES, "perfect_patch_map")
# per-image and per-epoch records of a fold, kept in fold.json but not in metrics.json's folds
FOLD_DETAIL = ("test_predictions", "patch_history", "mil_history", "map_scores", "bilateral")


def evaluate_fold_maps(recipe, model, images, cache, part: dict, negative: int) -> dict:
    """Test-part probabilities and per-image map scores against the ROIs, under the recipe's
    test-time augmentation (``eval.tta``; ``training.lesion_tta``)."""
    from napari_pathreview.explain.evaluate import scored_map
    from napari_pathreview.training.lesion_tta import merged_maps, merged_probs, predict_views

    test, val = part["test"], part["val"]
    views = predict_views(recipe.eval.tta, model, images, cache, test)
    probs = merged_probs(views)
    val_probs = merged_probs(predict_views(recipe.eval.tta, model, images, cache, val))
    labels = [int(images[i].label) for i in test]
    threshold = fold_threshold(recipe, model, [int(images[i].label) for i in val], val_probs)
    cams = tuple(recipe.eval.cam_methods) if recipe.eval.cam_iou else ()
    identity = views[0]  # the ROI's own patches are read in the film's own grid
    rows = []
    for j, i in enumerate(test):
        image = images[i]
        if not image.has_roi:
            continue
        maps = merged_maps(
            views, j, image.pixels.shape[:2], model.patch_size, model.stride, negative
        )
        maps["perfect_patch_map"] = perfect_patch_map(
            image.roi_mask, cache.grids[i], model.patch_size, model.stride
        )
        maps.update({method: image_cam(model, image.pixels, method) for method in cams})
        row = {
            "path": image.path,
            "label": int(image.label),
            "probs": probs[j].tolist(),
            "roi_patch_probs": roi_patch_probs(
                identity.patch_probs[j],
                identity.grids[j],
                image.roi_mask,
                model.patch_size,
                model.stride,
            ).tolist(),
        }
        for name in (*SCORED_MAPS, *cams):
            scores = scored_map(maps[name], image.roi_mask, recipe.lesion.map_threshold)
            row.update({f"{name}_{k}": v for k, v in scores.items()})
        rows.append(row)
    out = {
        "test_predictions": {
            "labels": labels,
            "probs": probs.tolist(),
            "paths": [images[i].path for i in test],
        },
        "test": compute_metrics(labels, probs, threshold, with_confusion=False),
        "threshold": threshold,
        "map_scores": rows,
    }
    if recipe.lesion.bilateral:
        out.update(bilateral_fold(images, part, negative, val_probs, probs))
    return out


def fold_threshold(recipe, model, val_labels: Sequence[int], val_probs) -> float | None:
    """Youden's J on the fold's validation bags for a binary task, as image runs choose theirs
    (``eval.threshold: youden``); None (argmax) otherwise."""
    binary = model.head.classifier.out_features == 2
    if not binary or recipe.eval.threshold != "youden" or len(val_labels) == 0:
        return None
    return youden_threshold(list(val_labels), val_probs[:, 1])


def image_cam(model, pixels: np.ndarray, method: str) -> np.ndarray:
    """A CAM of the fold model's own decision on one H×W×3 training-resolution image."""
    from napari_pathreview.explain import compute_cam
    from napari_pathreview.training.embeddings import model_input

    return compute_cam(model, model_input(pixels, model.spec.mean, model.spec.std), method)[0]


def bilateral_fold(images, part: dict, negative: int, val_probs, test_probs) -> dict:
    """The two-film decision of one fold: calibrated on its validation films, applied to its
    held-out films (``napari_pathreview.bilateral``)."""
    from napari_pathreview.bilateral import bilateral_probs, fit_bilateral

    val, test = part["val"], part["test"]
    val_paths, test_paths = [images[i].path for i in val], [images[i].path for i in test]
    calibration = fit_bilateral(
        val_probs,
        [images[i].label for i in val],
        [images[i].patient_id for i in val],
        negative,
        film_sides(val_paths),
        val_paths,
    )
    women = [images[i].patient_id for i in test]
    probs = bilateral_probs(
        test_probs, women, negative, calibration, film_sides(test_paths), test_paths
    )
    labels = [int(images[i].label) for i in test]
    return {
        "bilateral": {
            "calibration": calibration.to_dict(),
            "probs": probs.tolist(),
            "test": compute_metrics(labels, probs, None, with_confusion=False),
        }
    }


def film_sides(paths: Sequence[str]) -> list[FilmSide]:
    """Each film's breast and view as its file says (``io.patients.film_side``: a DICOM
    header's laterality and view position), so that training pairs a woman's films as
    inference does (``bilateral.pair_films``); MIAS files say neither."""
    from napari_pathreview.io.patients import film_side

    return [film_side(path) for path in paths]


def roi_patches(roi_mask: np.ndarray, grid: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """Indices of the patches centred inside the ROI (patches are labelled by their centre),
    or of the one patch covering most of it when no centre falls inside (an ROI smaller than
    the stride)."""
    gh, gw = grid
    mask = np.asarray(roi_mask, bool)
    rows = np.minimum(np.arange(gh) * stride + patch // 2, mask.shape[0] - 1)
    cols = np.minimum(np.arange(gw) * stride + patch // 2, mask.shape[1] - 1)
    inside = np.flatnonzero(mask[np.ix_(rows, cols)])
    if inside.size:
        return inside
    cover = [
        mask[r * stride : r * stride + patch, c * stride : c * stride + patch].sum()
        for r in range(gh)
        for c in range(gw)
    ]
    return np.asarray([int(np.argmax(cover))])


def roi_patch_probs(
    patch_probs: np.ndarray, grid: tuple[int, int], roi_mask: np.ndarray, patch: int, stride: int
) -> np.ndarray:
    """Mean class probabilities of the ROI's own patches (``roi_patches``)."""
    probs = np.asarray(patch_probs, float).reshape(grid[0] * grid[1], -1)
    return probs[roi_patches(roi_mask, grid, patch, stride)].mean(axis=0)


def perfect_patch_map(
    roi_mask: np.ndarray, grid: tuple[int, int], patch: int, stride: int
) -> np.ndarray:
    """The map of a patch classifier that is right about every patch (1 on the ROI's own
    patches, 0 elsewhere), painted like the model's maps: what this patch geometry allows."""
    from napari_pathreview.models.mil import grid_to_image

    values = np.zeros(grid[0] * grid[1])
    values[roi_patches(roi_mask, grid, patch, stride)] = 1.0
    return grid_to_image(values, grid, np.asarray(roi_mask).shape[:2], patch, stride)


def pooled_with_ci(
    labels: np.ndarray,
    probs: np.ndarray,
    recipe,
    groups: Sequence[str] | None,
    threshold: float | None = None,
) -> dict:
    """Pooled out-of-fold metrics with the run's bootstrap 95 % CIs (``ci95``), drawing whole
    split groups (``groups``, one per film; ``statistics.bootstrap_groups``): a woman's two
    films are not independent, and drawing films one by one gave intervals as if each film
    were another woman."""
    ci = bootstrap_report(labels, probs, threshold, Resampling.of_run(recipe, groups))
    return {**compute_metrics(labels, probs, threshold), **ci}


def bilateral_decision(
    labels: np.ndarray, folds: list[dict], recipe, groups: Sequence[str] | None
) -> dict:
    """Pooled out-of-fold figures of the two-film decision, with the same bootstrap as the
    run's own, and each fold's figures and fitted calibration."""
    probs = np.concatenate([np.asarray(f["bilateral"]["probs"], float) for f in folds])
    out = {
        "rule": "P(abnormal) = sigmoid(slope * (film log-odds - other film's) + intercept), "
        "fitted per fold on its validation films; lesion classes share it in the film's own "
        "proportions; needs both films of a woman (the registered model reads one)",
        "test": pooled_with_ci(labels, probs, recipe, groups),
        "folds": [
            {"calibration": f["bilateral"]["calibration"], "test": f["bilateral"]["test"]}
            for f in folds
        ],
    }
    if len(folds) > 1:
        out["kfold_summary"] = summarize_folds([f["bilateral"]["test"] for f in folds])
    return out


def registered_bilateral(
    folds: list[dict], samples, classes: Sequence[str], negative: int, best: int | None
) -> dict:
    """The registered model's two-film calibration (its card's ``bilateral``).

    One fold's model (``best``) keeps the calibration fitted on that fold's validation films.
    A fold ensemble, whose films were all seen in training by some member, is calibrated on the
    folds' held-out films, each scored by the fold model that never saw it (a woman's two films
    share a fold): cross-fitted, as the ensemble averages those models.
    """
    from napari_pathreview.bilateral import BilateralCalibration, card_entry, fit_bilateral

    if best is not None:
        calibration = BilateralCalibration.from_dict(folds[best]["bilateral"]["calibration"])
        return card_entry(calibration, classes[negative], f"fold {best}'s validation films")
    patient_of = {s.path: s.patient_id for s in samples}
    tests = [f["test_predictions"] for f in folds]
    probs = np.concatenate([np.asarray(t["probs"], float) for t in tests])
    labels = [label for t in tests for label in t["labels"]]
    paths = [path for t in tests for path in t["paths"]]
    patients = [patient_of[path] for path in paths]
    calibration = fit_bilateral(probs, labels, patients, negative, film_sides(paths), paths)
    return card_entry(calibration, classes[negative], f"the {len(folds)} folds' held-out films")


def _mean_ci(values: Sequence[float], n_resamples: int, seed: int) -> dict:
    values = np.asarray([v for v in values if math.isfinite(v)], float)
    if values.size == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, values.size, values.size)].mean() for _ in range(n_resamples)]
    mean = float(values.mean())
    return {"mean": mean, "ci95": list(centred_interval(means, mean)), "n": int(values.size)}


def map_summary(rows: Sequence[dict], name: str, n_resamples: int, seed: int) -> dict:
    """Mean and CI of each score of one map over the scored images, and ``n_cam_empty``: how
    many of them had a constant map (``cam_is_empty``), which scores 0 as a miss would.

    Rows scored before the flag existed (a fold.json kept from an older version) leave the count
    out rather than report 0.
    """
    out: dict = {
        metric: _mean_ci([r[f"{name}_{metric}"] for r in rows], n_resamples, seed)
        for metric in ("iou", "dice", "pointing", "energy")
    }
    flags = [r.get(f"{name}_cam_empty") for r in rows]
    if None not in flags:
        out["n_cam_empty"] = int(sum(flags))
    return out


def summarize_lesion_run(
    recipe,
    images,
    classes,
    plan,
    folds: list[dict],
    run_dir: Path,
    pixel_size: float | None,
    negative: int,
) -> dict:
    """metrics.json: pooled out-of-fold metrics with CIs, per-fold figures, map IoU/Dice, the
    lesion classes' separation at the ROIs (``lesion_class_separation``) and abnormal-vs-normal
    detection, alone and against the woman's other film (``lesion_detection``)."""
    test = _PooledTest.of(folds, images)
    labels, probs, paths = test.labels, test.probs, test.paths
    groups = bootstrap_groups(images, paths, recipe.split.group_by, plan.leaky)
    rows = [row for f in folds for row in f["map_scores"]]
    threshold = pooled_threshold([f.get("threshold") for f in folds])
    metrics = {
        **_run_header(recipe, images, classes, plan, pixel_size, threshold),
        "test": {
            **pooled_with_ci(labels, probs, recipe, groups, threshold),
            "pooled_out_of_fold": len(folds) > 1,
        },
        "maps_vs_roi": {"threshold": recipe.lesion.map_threshold, **_map_summaries(recipe, rows)},
        "lesion_classes_at_roi": lesion_class_separation(
            rows,
            classes,
            negative,
            recipe.eval.bootstrap,
            recipe.seed,
            None if groups is None else dict(zip(paths, groups, strict=True)),
        ),
        "lesion_detection": lesion_detection(
            labels,
            probs,
            test.patients,
            test.fold_of,
            negative,
            recipe.eval.bootstrap,
            recipe.seed,
            groups=groups,
            group_by=recipe.split.group_by,
            bilateral=recipe.modality == "mammogram",
            sides=film_sides(paths) if recipe.modality == "mammogram" else None,
            films=paths,
        ),
        "folds": [{k: v for k, v in f.items() if k not in FOLD_DETAIL} for f in folds],
    }
    if len(folds) > 1:
        metrics["kfold_summary"] = summarize_folds([f["test"] for f in folds])
    if recipe.lesion.bilateral:
        metrics["bilateral_decision"] = bilateral_decision(labels, folds, recipe, groups)
    metrics = json_safe(metrics)
    _write_run_files(run_dir, metrics, rows, test, classes)
    return metrics


@dataclass(frozen=True)
class _PooledTest:
    """Every fold's test predictions pooled out of fold, each film with its woman and fold."""

    labels: np.ndarray
    probs: np.ndarray
    paths: list[str]
    patients: list[str]
    fold_of: list[int]

    @classmethod
    def of(cls, folds: Sequence[dict], images) -> _PooledTest:
        """Pool ``folds``; a film the run's images no longer list is a woman of its own."""
        patient_of = {im.path: im.patient_id for im in images}
        tests = [f["test_predictions"] for f in folds]
        paths = [p for t in tests for p in t["paths"]]
        return cls(
            labels=np.concatenate([np.asarray(t["labels"], int) for t in tests]),
            probs=np.concatenate([np.asarray(t["probs"], float) for t in tests]),
            paths=paths,
            patients=[patient_of.get(p, p) for p in paths],
            fold_of=[i for i, t in enumerate(tests) for _ in t["paths"]],
        )


def _run_header(recipe, images, classes, plan, pixel_size: float | None, threshold) -> dict:
    """What the run was (task, split protocol, pixel size, population, decision rule, TTA):
    metrics.json opens with it so its numbers are read against how they were made."""
    return {
        "recipe": recipe.name,
        "task": recipe.data.task,
        "classes": list(classes),
        "lesion_aware": True,
        "pooling": recipe.lesion.pooling,
        "pixel_size": pixel_size,
        "pixel_unit": recipe.lesion.pixel_unit,
        "split_protocol": plan.description,
        "protocol": plan.protocol,
        "leaky": plan.leaky,
        **population(images, recipe.split.group_by),
        "n_images_with_roi": int(sum(im.has_roi for im in images)),
        "threshold": threshold,
        "threshold_rule": "youden_on_validation" if threshold is not None else "argmax",
        "tta": recipe.eval.tta,
    }


def _map_summaries(recipe, rows: Sequence[dict]) -> dict:
    """IoU/Dice of the model's maps and of each CAM scored on every row (empty maps logged)."""
    from napari_pathreview.explain.evaluate import empty_maps_note

    cams = recipe.eval.cam_methods if recipe.eval.cam_iou else ()
    maps = {}
    for name in (*SCORED_MAPS, *(m for m in cams if all(f"{m}_iou" in r for r in rows))):
        maps[name] = map_summary(rows, name, recipe.eval.bootstrap, recipe.seed)
        note = empty_maps_note(name, maps[name].get("n_cam_empty", 0), len(rows))
        if note is not None:
            log.warning(note)
    return maps


def _write_run_files(run_dir: Path, metrics: dict, rows, test: _PooledTest, classes) -> None:
    """metrics.json, map_scores.json and the ROC, PR and confusion figures of the run."""
    from napari_pathreview.training.plots import plot_confusion, plot_pr, plot_roc

    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (run_dir / "map_scores.json").write_text(json.dumps(json_safe(rows), indent=1))
    plot_roc(test.labels, test.probs, classes, run_dir / "roc.png")
    plot_pr(test.labels, test.probs, classes, run_dir / "pr.png")
    plot_confusion(metrics["test"]["confusion_matrix"], classes, run_dir / "confusion.png")


def _preprocess(recipe, model, pixel_size: float | None, stain_target: dict | None) -> dict:
    size = model.spec.input_size[-1]
    return {
        "input_size": [3, size, size],
        "mean": list(model.spec.mean),
        "std": list(model.spec.std),
        "resize": None,
        "crop": "none",
        "interpolation": "area",
        "channels": "grey_to_rgb" if recipe.modality == "mammogram" else "rgb",
        "pixel_size": pixel_size,
        "pixel_unit": recipe.lesion.pixel_unit,
        "intensity": recipe.data.intensity,
        "stain_method": recipe.data.stain if stain_target else "none",
        "stain_target": stain_target,
    }


def register_lesion_run(
    recipe, samples, classes, folds, metrics: dict, run_dir: Path, model, pixel_size, negative
) -> str:
    """Register the run as one ``patch_mil`` model: the fold with the best validation score,
    or (``register.select: ensemble``) the mean of every fold's model.

    Args:
        model: a freshly built ``patch_mil`` of the run's geometry; the folds' weights go in.
            Its member count says which: one member takes the best fold, k members all k folds
            (``run_lesion`` builds it from ``register.select``).
    """
    from safetensors.torch import load_file

    from napari_pathreview.registry import ModelRegistry
    from napari_pathreview.registry.card import ModelCard
    from napari_pathreview.training.datasets import data_fingerprint
    from napari_pathreview.training.registration import card_metrics, describe

    def weights_of(index: int) -> dict:
        return load_file(str(run_dir / f"fold{index}" / folds[index]["weights"]))

    scores = [f.get("best_val_score") for f in folds]
    best = int(np.argmax([-np.inf if v is None else v for v in scores]))
    size = model.spec.input_size[-1]
    if model.members > 1:
        model.load_member_states([weights_of(i) for i in range(len(folds))])
        chosen = {"registered_folds": list(range(len(folds))), "selection": "ensemble"}
        stain_target = None  # refused with data.stain at recipe load: one target per card
        threshold = metrics.get("threshold")  # the folds' pooled, as the run scored them
    else:
        model.load_state_dict(weights_of(best))
        chosen = {"registered_fold": best, "selection": recipe.register.select}  # best | ema
        stain_target = folds[best].get("stain_target")
        threshold = folds[best].get("threshold")
    model.eval()
    kept = card_metrics(metrics)
    kept["maps_vs_roi"] = metrics["maps_vs_roi"]
    if "bilateral_decision" in metrics:  # beside the model's own figures: it needs two films
        kept["bilateral_decision"] = metrics["bilateral_decision"]
    card = {
        "name": recipe.register.name or recipe.name.replace("_", "-"),
        "architecture": "patch_mil",
        "task": recipe.data.task,
        "classes": list(classes),
        "modality": recipe.modality,
        "input_size": [3, size, size],
        "stain_method": recipe.data.stain if stain_target else "none",
        "metrics": {**kept, **chosen},
        "threshold": threshold,  # binary: Youden's J on validation, as the run scored it
        "tta": recipe.eval.tta,  # the views the threshold and two-film calibration assume
        "split_protocol": metrics["split_protocol"],
        "recipe": recipe.to_dict(),
        "data_fingerprint": data_fingerprint(samples),
        "description": describe(recipe, len(samples)),
    }
    if "preprocess" in ModelCard.__dataclass_fields__:
        card["preprocess"] = _preprocess(recipe, model, pixel_size, stain_target)
    if "bilateral_decision" in metrics:
        card["bilateral"] = registered_bilateral(
            folds, samples, classes, negative, None if model.members > 1 else best
        )
    version = ModelRegistry().register(model, card)
    return f"{card['name']}@{version}"
