"""Evaluation of trained folds and the run summary written to ``metrics.json``.

The decision threshold is chosen on the validation part (Youden's J) and only then applied
to the test part, so the test figures never see their own labels twice. Test predictions
use the recipe's TTA; CIs come from a bootstrap over test images (pooled out-of-fold
predictions for k-fold, alongside the per-fold mean ± sd).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from napari_pathreview.training.metrics import compute_metrics, json_safe, youden_threshold
from napari_pathreview.training.statistics import bootstrap_ci, summarize_folds

log = logging.getLogger(__name__)
WEIGHTS_NAME = "selected.safetensors"


def selected_state(recipe, fit) -> dict:
    """Weights to register: best checkpoint (of the EMA when select=ema) or the top-k mean."""
    if recipe.register.select == "topk" and fit.topk_state is not None:
        return fit.topk_state
    return fit.best_state


def _set_eval_transform(recipe, model, dataset) -> None:
    from napari_pathreview.training.datasets import build_transform

    spec = getattr(model, "spec", None)
    mean = spec.mean if spec else (0.485, 0.456, 0.406)
    std = spec.std if spec else (0.229, 0.224, 0.225)
    dataset.transform = build_transform(recipe.augment, recipe.data.image_size, mean, std, False)


def evaluate_fold(
    recipe, data, index: int, model, fit, subset, fold_dir: Path, device, write: bool = True
) -> dict:
    """Load the chosen weights, threshold on validation, test with TTA; write fold.json."""
    from safetensors.torch import save_file

    from napari_pathreview.training.trainer import predict_probabilities

    state = selected_state(recipe, fit)
    model.load_state_dict(state)
    model.to(device)
    val_set, test_set = subset("val"), subset("test")
    if len(test_set) == 0:
        test_set = val_set
    for dataset in (val_set, test_set):
        _set_eval_transform(recipe, model, dataset)
    bs = recipe.optim.batch_size
    val_probs, val_labels = predict_probabilities(model, val_set, bs, device, recipe.eval.tta)
    threshold = None
    if len(data.classes) == 2 and recipe.eval.threshold == "youden" and len(val_labels):
        threshold = youden_threshold(val_labels, val_probs[:, 1])
    test_probs, test_labels = predict_probabilities(model, test_set, bs, device, recipe.eval.tta)
    fold = data.plan.folds[index]
    result = {
        "fold": index,
        "sizes": {"train": len(fold.train), "val": len(fold.val), "test": len(fold.test)},
        "patients": {
            name: len({data.samples[i].patient_id for i in getattr(fold, name)})
            for name in ("train", "val", "test")
        },
        "best_epoch": fit.best_epoch,
        "best_val_score": fit.best_score,
        "stopped_early": fit.stopped_early,
        "threshold": threshold,
        "val": compute_metrics(val_labels, val_probs, threshold) if len(val_labels) else {},
        "test": compute_metrics(test_labels, test_probs, threshold),
        "history": fit.history,
        "test_predictions": {
            "paths": [data.samples[i].path for i in (fold.test or fold.val)],
            "labels": test_labels.tolist(),
            "probs": test_probs.tolist(),
        },
        "weights": WEIGHTS_NAME,
    }
    result = json_safe(result)
    if write:
        save_file({k: v.contiguous() for k, v in state.items()}, str(fold_dir / WEIGHTS_NAME))
        (fold_dir / "fold.json").write_text(json.dumps(result))
        _plot_curves(fit.history, fold_dir / "curves.png")
    return result


def _plot_curves(history, path: Path) -> None:
    from napari_pathreview.training.plots import plot_curves

    if history:
        plot_curves(history, path)


def pooled_predictions(folds: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Test labels and probabilities of every fold stacked (out-of-fold for k-fold)."""
    labels = np.concatenate([np.asarray(f["test_predictions"]["labels"], dtype=int) for f in folds])
    probs = np.concatenate([np.asarray(f["test_predictions"]["probs"], dtype=float) for f in folds])
    return labels, probs


def _pooled_threshold(folds: list[dict]) -> float | None:
    values = [f["threshold"] for f in folds if f.get("threshold") is not None]
    return float(np.mean(values)) if values else None


def summarize_run(recipe, data, folds: list[dict], run_dir: Path, write: bool = True) -> dict:
    """metrics.json: protocol, leaky flag, threshold, test metrics with CIs, per-fold results."""
    labels, probs = pooled_predictions(folds)
    threshold = _pooled_threshold(folds)
    pooled = compute_metrics(labels, probs, threshold)
    ci = bootstrap_ci(labels, probs, threshold, n_resamples=recipe.eval.bootstrap, seed=recipe.seed)
    kfold = len(folds) > 1
    metrics = {
        "recipe": recipe.name,
        "task": recipe.data.task,
        "classes": list(data.classes),
        "split_protocol": data.plan.description,
        "protocol": data.plan.protocol,
        "leaky": data.plan.leaky,
        "n_images": len(data.samples),
        "n_patients": len({s.patient_id for s in data.samples}),
        "threshold": threshold,
        "threshold_rule": "youden_on_validation" if threshold is not None else "argmax",
        "tta": recipe.eval.tta,
        "test": {
            **pooled,
            "ci95": {k: list(v) for k, v in ci.items()},
            "pooled_out_of_fold": kfold,
        },
        "folds": [
            {k: v for k, v in f.items() if k not in ("test_predictions", "history")} for f in folds
        ],
    }
    if kfold:
        metrics["kfold_summary"] = summarize_folds([f["test"] for f in folds])
    if recipe.eval.cam_iou:
        metrics["cam_iou"] = _cam_iou(recipe, data, folds, run_dir)
    if recipe.data.external_test:
        metrics["external_test"] = external_test(recipe, data, folds, run_dir)
    metrics = json_safe(metrics)
    if write:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _plots(data, folds, metrics, labels, probs, run_dir)
    return metrics


def _plots(data, folds, metrics, labels, probs, run_dir: Path) -> None:
    from napari_pathreview.training.plots import plot_confusion, plot_curves, plot_pr, plot_roc

    if folds[0].get("history"):
        plot_curves(folds[0]["history"], run_dir / "curves.png")
    plot_roc(labels, probs, data.classes, run_dir / "roc.png")
    plot_pr(labels, probs, data.classes, run_dir / "pr.png")
    plot_confusion(metrics["test"]["confusion_matrix"], data.classes, run_dir / "confusion.png")


def best_fold(folds: list[dict]) -> int:
    """The fold whose model is registered: highest validation score (ties → lowest index)."""
    scores = [
        f.get("best_val_score") if f.get("best_val_score") is not None else -np.inf for f in folds
    ]
    return int(np.argmax(scores))


def _cam_iou(recipe, data, folds: list[dict], run_dir: Path) -> dict:
    """Seed 004: CAM IoU against MIAS ROI circles on test images, via the explanation engine."""
    from napari_pathreview import explain
    from napari_pathreview.training.cam_eval import cam_iou_for_fold

    index = best_fold(folds)
    return cam_iou_for_fold(recipe, data, index, run_dir / f"fold{index}" / WEIGHTS_NAME, explain)


BACH_TO_BINARY = {
    "normal": "benign",
    "benign": "benign",
    "insitu": "malignant",
    "in situ": "malignant",
    "in_situ": "malignant",
    "invasive": "malignant",
}


def _external_labels(samples, classes) -> list[int]:
    """Class indices of an external set; BACH's four classes fold to benign/malignant (seed 001)."""
    from napari_pathreview.training.datasets import DatasetError

    out = []
    for sample in samples:
        label = sample.label
        if label not in classes:
            label = BACH_TO_BINARY.get(label.lower())
        if label not in classes:
            raise DatasetError(f"external test label {sample.label!r} is not one of {classes}")
        out.append(classes.index(label))
    return out


def external_test(recipe, data, folds: list[dict], run_dir: Path, device="cpu") -> dict:
    """Score the registered fold on an external manifest (e.g. BACH): all and QC-passed images."""
    from safetensors.torch import load_file

    from napari_pathreview.stain import QCConfig, assess_quality, normalizer_from_dict
    from napari_pathreview.training import datasets as ds
    from napari_pathreview.training.recipe import resolve_path
    from napari_pathreview.training.run import build_model
    from napari_pathreview.training.trainer import predict_probabilities

    samples = ds.from_csv(resolve_path(recipe, recipe.data.external_test))
    labels = _external_labels(samples, list(data.classes))
    size = recipe.data.resize or max(recipe.data.image_size, round(recipe.data.image_size * 8 / 7))
    prepared = ds.prepare_all(samples, size, recipe.data.crop)
    qc_kwargs = {
        k: v
        for k, v in (
            ("blur_threshold", recipe.data.qc_blur_threshold),
            ("min_tissue_fraction", recipe.data.qc_tissue_fraction),
        )
        if v is not None
    }
    passed = [assess_quality(p.pixels, QCConfig(**qc_kwargs)).passed for p in prepared]
    if data.stain_target is not None:
        normalizer = normalizer_from_dict(data.stain_target)
        prepared = [type(p)(normalizer.transform(p.pixels), p.rois) for p in prepared]
    index = best_fold(folds)
    model = build_model(recipe, len(data.classes))
    model.load_state_dict(load_file(str(run_dir / f"fold{index}" / WEIGHTS_NAME)))
    dataset = ds.ImageDataset(prepared, labels)
    _set_eval_transform(recipe, model, dataset)
    probs, truth = predict_probabilities(
        model.to(device), dataset, recipe.optim.batch_size, device, recipe.eval.tta
    )
    threshold = folds[index].get("threshold")
    result = {"manifest": recipe.data.external_test, "fold": index}
    keep = np.asarray(passed, dtype=bool)
    for name, mask in (("all", np.ones_like(keep)), ("qc_passed", keep)):
        if mask.any():
            ci = bootstrap_ci(
                truth[mask],
                probs[mask],
                threshold,
                n_resamples=recipe.eval.bootstrap,
                seed=recipe.seed,
            )
            result[name] = {
                **compute_metrics(truth[mask], probs[mask], threshold),
                "ci95": {k: list(v) for k, v in ci.items()},
            }
    return result
