"""Registering a finished run: the chosen fold's weights plus a complete model card."""

from __future__ import annotations

import logging
from pathlib import Path

from napari_pathreview.registry import ModelRegistry
from napari_pathreview.training.build import load_fold_model
from napari_pathreview.training.datasets import data_fingerprint, qc_config
from napari_pathreview.training.results import FoldResult, best_fold

log = logging.getLogger(__name__)
_TASKS = {"binary": "binary", "subtype": "subtype", "mammogram": "mammogram"}


def card_metrics(metrics: dict) -> dict:
    """What the card keeps of metrics.json: test figures with CIs, protocol, k-fold summary."""
    keep = (
        "split_protocol",
        "protocol",
        "leaky",
        "threshold",
        "threshold_rule",
        "tta",
        "n_images",
        "n_patients",
        "group_by",
        "n_groups",
        "kfold_summary",
        "cam_iou",
        "external_test",
    )
    out = {k: metrics[k] for k in keep if k in metrics}
    out["test"] = metrics["test"]
    return out


def describe(recipe, n_images: int) -> str:
    """The card description; ``{n_images}`` in the recipe's text is filled in."""
    text = recipe.register.description or f"trained by recipe {recipe.name}"
    return text.replace("{n_images}", str(n_images))


def register_run(recipe, data, folds: list[FoldResult], metrics: dict, run_dir: Path) -> str:
    """Register the best fold's selected weights (best / EMA / top-k mean); returns name@version.

    The card carries that fold's preprocessing spec as resolved for training (geometry,
    resolution, normalisation, and the stain target fitted on that fold's training part), and
    the recipe's QC thresholds, so prediction flags what training would have dropped.
    """
    index = best_fold(folds)
    model = load_fold_model(run_dir, index)
    spec = folds[index].preprocess
    card = {
        "name": recipe.register.name or recipe.name.replace("_", "-"),
        "architecture": recipe.model.architecture,
        "architecture_kwargs": dict(recipe.model.kwargs),
        "task": _TASKS.get(recipe.data.task, recipe.data.task),
        "classes": list(data.classes),
        "modality": recipe.modality,
        "input_size": list(spec.input_size),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "stain_method": spec.stain_method,
        "stain_target": spec.stain_target,
        "preprocess": spec.to_dict(),
        "threshold": folds[index].threshold,
        "tta": recipe.eval.tta,  # the views the threshold was fitted under
        # the QC thresholds of data.qc, which prediction flags images by (H&E rules only)
        "qc": qc_config(recipe.data).to_dict() if recipe.modality == "histology" else None,
        "metrics": {
            **card_metrics(metrics),
            "registered_fold": index,
            "selection": recipe.register.select,
        },
        "split_protocol": metrics["split_protocol"],
        "recipe": recipe.to_dict(),
        "data_fingerprint": data_fingerprint(data.samples),
        "description": describe(recipe, len(data.samples)),
    }
    version = ModelRegistry().register(model, card)
    ref = f"{card['name']}@{version}"
    log.info("registered %s (fold %d, %s weights)", ref, index, recipe.register.select)
    return ref
