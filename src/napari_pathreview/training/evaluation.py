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

from napari_pathreview.preprocessing import PreprocessSpec
from napari_pathreview.training import datasets as ds
from napari_pathreview.training.build import load_fold_model
from napari_pathreview.training.cam_eval import cam_iou_for_fold
from napari_pathreview.training.label_checks import check_modality
from napari_pathreview.training.metrics import (
    compute_metrics,
    json_safe,
    pooled_threshold,
    youden_threshold,
)
from napari_pathreview.training.preparation import stain_images
from napari_pathreview.training.recipe import resolve_path
from napari_pathreview.training.results import (
    WEIGHTS_NAME,
    FoldResult,
    TestPredictions,
    best_fold,
    fold_dir,
    write_fold,
)
from napari_pathreview.training.statistics import (
    Resampling,
    bootstrap_groups,
    bootstrap_report,
    population,
    summarize_folds,
)
from napari_pathreview.training.trainer import predict_probabilities

log = logging.getLogger(__name__)


def selected_state(recipe, fit) -> dict:
    """Weights to register: best checkpoint (of the EMA when select=ema) or the top-k mean."""
    if recipe.register.select == "topk" and fit.topk_state is not None:
        return fit.topk_state
    return fit.best_state


def _predict_parts(recipe, model, val_set, test_set, spec: PreprocessSpec, device) -> tuple:
    """Validation and test probabilities and labels (the validation set stands in for an
    empty test part), through the spec's evaluation transform and the recipe's TTA."""
    if len(test_set) == 0:
        test_set = val_set
    for dataset in (val_set, test_set):
        dataset.transform = ds.eval_transform(spec)
    bs, tta = recipe.optim.batch_size, recipe.eval.tta
    val_probs, val_labels = predict_probabilities(model, val_set, bs, device, tta)
    test_probs, test_labels = predict_probabilities(model, test_set, bs, device, tta)
    return val_probs, val_labels, test_probs, test_labels


def evaluate_fold(
    recipe,
    data,
    index: int,
    model,
    fit,
    val_set: ds.ImageDataset,
    test_set: ds.ImageDataset,
    spec: PreprocessSpec,
    run_dir: Path,
    device,
    write: bool = True,
) -> FoldResult:
    """Load the chosen weights, threshold on validation, test with TTA; write fold.json.

    Args:
        recipe: The run's recipe.
        data: The run's ``RunData`` (samples, classes, split plan).
        index: Fold index.
        model: The fold's trained model.
        fit: The trainer's ``FitResult``.
        val_set: The fold's validation images (stained with the fold's target).
        test_set: The fold's test images (empty: the validation set stands in).
        spec: The fold's preprocessing spec (evaluation transform and registered card).
        run_dir: The run folder.
        device: Torch device.
        write: Write weights, fold.json and curves (rank 0 only under torchrun).
    """
    from safetensors.torch import save_file

    state = selected_state(recipe, fit)
    model.load_state_dict(state)
    model.to(device)
    val_probs, val_labels, test_probs, test_labels = _predict_parts(
        recipe, model, val_set, test_set, spec, device
    )
    threshold = None
    if len(data.classes) == 2 and recipe.eval.threshold == "youden" and len(val_labels):
        threshold = youden_threshold(val_labels, val_probs[:, 1])
        if np.unique(val_labels).size < 2:
            log.warning(
                "fold %d: the validation part holds only %r images: no ROC curve for Youden's "
                "J, so the threshold is 0.5 (more patients, or a larger split.val_fraction)",
                index,
                data.classes[int(val_labels[0])],
            )
    fold = data.plan.folds[index]
    parts = ("train", "val", "test")
    result = FoldResult(
        fold=index,
        classes=tuple(data.classes),
        sizes={name: len(getattr(fold, name)) for name in parts},
        patients={
            name: len({data.samples[i].patient_id for i in getattr(fold, name)}) for name in parts
        },
        best_epoch=fit.best_epoch,
        best_val_score=json_safe(fit.best_score),
        stopped_early=fit.stopped_early,
        threshold=threshold,
        val=json_safe(compute_metrics(val_labels, val_probs, threshold)) if len(val_labels) else {},
        test=json_safe(compute_metrics(test_labels, test_probs, threshold)),
        history=json_safe(fit.history),
        test_predictions=TestPredictions(
            tuple(data.samples[i].path for i in (fold.test or fold.val)),
            tuple(int(v) for v in test_labels),
            tuple(tuple(float(p) for p in row) for row in test_probs),
        ),
        preprocess=spec,
    )
    if write:
        folder = fold_dir(run_dir, index)
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / WEIGHTS_NAME))
        write_fold(run_dir, result)
        _plot_curves(fit.history, folder / "curves.png")
    return result


def _plot_curves(history, path: Path) -> None:
    from napari_pathreview.training.plots import plot_curves

    if history:
        plot_curves(history, path)


def pooled_predictions(folds: list[FoldResult]) -> tuple[np.ndarray, np.ndarray]:
    """Test labels and probabilities of every fold stacked (out-of-fold for k-fold)."""
    arrays = [f.test_predictions.arrays() for f in folds]
    return np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays])


def summarize_run(recipe, data, folds: list[FoldResult], run_dir: Path, write: bool = True) -> dict:
    """metrics.json: protocol, leaky flag, threshold, test metrics with CIs, per-fold results."""
    labels, probs = pooled_predictions(folds)
    threshold = pooled_threshold([f.threshold for f in folds])
    pooled = compute_metrics(labels, probs, threshold)
    paths = [p for f in folds for p in f.test_predictions.paths]
    groups = bootstrap_groups(data.samples, paths, recipe.split.group_by, data.plan.leaky)
    ci = bootstrap_report(labels, probs, threshold, Resampling.of_run(recipe, groups))
    kfold = len(folds) > 1
    metrics = {
        "recipe": recipe.name,
        "task": recipe.data.task,
        "classes": list(data.classes),
        "split_protocol": data.plan.description,
        "protocol": data.plan.protocol,
        "leaky": data.plan.leaky,
        **population(data.samples, recipe.split.group_by),
        "threshold": threshold,
        "threshold_rule": _threshold_rule(folds, threshold),
        "tta": recipe.eval.tta,
        "test": {
            **pooled,
            **ci,
            "pooled_out_of_fold": kfold,
        },
        "folds": [f.summary() for f in folds],
    }
    if kfold:
        metrics["kfold_summary"] = summarize_folds([f.test for f in folds])
    if recipe.eval.cam_iou:
        metrics["cam_iou"] = _cam_iou(recipe, data, folds, run_dir)
    if recipe.data.external_test:
        metrics["external_test"] = external_test(recipe, data, folds, run_dir)
    metrics = json_safe(metrics)
    if write:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _plots(data, folds, metrics, labels, probs, run_dir)
    return metrics


def _threshold_rule(folds: list[FoldResult], threshold: float | None) -> str:
    """How the pooled threshold came about; Youden's J needs both classes in a fold's
    validation part, and a fold without them took 0.5 (``youden_threshold``)."""
    if threshold is None:
        return "argmax"
    fallback = [
        f.fold
        for f in folds
        if f.threshold is not None
        and sum(1 for row in f.val.get("confusion_matrix", []) if sum(row)) < 2
    ]
    if not fallback:
        return "youden_on_validation"
    if len(fallback) == len(folds):
        return "0.5: every validation part held one class (no ROC curve for Youden's J)"
    shown = ", ".join(map(str, fallback))
    return f"youden_on_validation; 0.5 in fold(s) {shown}, whose validation part held one class"


def _plots(data, folds, metrics, labels, probs, run_dir: Path) -> None:
    from napari_pathreview.training.plots import plot_confusion, plot_curves, plot_pr, plot_roc

    if folds[0].history:
        plot_curves(folds[0].history, run_dir / "curves.png")
    plot_roc(labels, probs, data.classes, run_dir / "roc.png")
    plot_pr(labels, probs, data.classes, run_dir / "pr.png")
    plot_confusion(metrics["test"]["confusion_matrix"], data.classes, run_dir / "confusion.png")


def _cam_iou(recipe, data, folds: list[FoldResult], run_dir: Path) -> dict:
    """Seed 004: CAM IoU against MIAS ROI circles on test images, via the explanation engine."""
    index = best_fold(folds)
    return cam_iou_for_fold(recipe, data, folds[index], run_dir)


BACH_TO_BINARY = {
    "normal": "benign",
    "benign": "benign",
    "insitu": "malignant",
    "in situ": "malignant",
    "in_situ": "malignant",
    "invasive": "malignant",
}


def _external_labels(samples, classes, manifest: Path) -> list[int]:
    """Class indices of an external set; BACH's four classes fold to benign/malignant (seed 001)."""
    out = []
    for sample in samples:
        label = sample.label
        if label not in classes:
            label = BACH_TO_BINARY.get(label.lower())
        if label not in classes:
            raise ds.DatasetError(
                f"data.external_test {manifest}: label {sample.label!r} of {sample.path} is not "
                f"one of the model's classes {classes} (nor a BACH class that folds into them)"
            )
        out.append(classes.index(label))
    return out


def external_samples(recipe, classes) -> tuple[list, list[int]]:
    """The external manifest's samples and class indices, checked as the training data is
    (labels, modality): run before training too, so a bad manifest costs no training."""
    manifest = resolve_path(recipe, recipe.data.external_test)
    samples = ds.from_csv(manifest)
    check_modality(samples, recipe.modality, f"data.external_test {manifest}")
    return samples, _external_labels(samples, list(classes), manifest)


def external_test(recipe, data, folds: list[FoldResult], run_dir: Path, device="cpu") -> dict:
    """Score the registered fold on an external manifest (e.g. BACH): all and QC-passed images.

    The images are prepared with that fold's spec and stained with its target, as the
    registered model will be fed.
    """
    index = best_fold(folds)
    spec = folds[index].preprocess
    samples, labels = external_samples(recipe, data.classes)
    prepared = ds.prepare_all(samples, spec, qc=ds.qc_config(recipe.data))  # as predict judges
    passed = [p.qc.passed for p in prepared]
    prepared = stain_images(prepared, spec.stain_target)
    model = load_fold_model(run_dir, index)
    dataset = ds.ImageDataset(prepared, labels, transform=ds.eval_transform(spec))
    probs, truth = predict_probabilities(
        model.to(device), dataset, recipe.optim.batch_size, device, recipe.eval.tta
    )
    threshold = folds[index].threshold
    result = {"manifest": recipe.data.external_test, "fold": index}
    keep = np.asarray(passed, dtype=bool)
    groups = external_groups(samples, recipe.split.group_by)
    for name, mask in (("all", np.ones_like(keep)), ("qc_passed", keep)):
        if mask.any():
            drawn = None if groups is None else [g for g, m in zip(groups, mask, strict=True) if m]
            resampling = Resampling.of_run(recipe, drawn)
            ci = bootstrap_report(truth[mask], probs[mask], threshold, resampling)
            result[name] = {**compute_metrics(truth[mask], probs[mask], threshold), **ci}
    return result


def external_groups(samples, group_by: str) -> list[str] | None:
    """What the external test's bootstrap draws whole: the patients its manifest names (a
    ``patient_id`` column, or file names that say, as BreaKHis's do), grouped as the run's
    split groups them (``split.group_by``); None (single images) when every image is a
    patient of its own, as in a BACH manifest without patients."""
    groups = bootstrap_groups(samples, [s.path for s in samples], group_by, leaky=False)
    return None if len(set(groups)) == len(groups) else groups
