"""Classification metrics over predicted probabilities, computed with scikit-learn.

Every figure the training reports comes from here, so the run folder, the model card
and the bootstrap confidence intervals all agree. Binary tasks treat the last class as
the positive one (the registry's convention: ``threshold`` is on P(classes[-1])).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

from napari_pathreview.errors import InvalidInputError

SCALAR_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "sensitivity",
    "specificity",
    "f1_macro",
    "roc_auc",
    "pr_auc",
    "ece",
)


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes early: a silent broadcast here would corrupt every figure downstream."""
    y_true = np.asarray(y_true).astype(int).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise InvalidInputError(
            f"probabilities must be N×K with N = {y_true.shape[0]} labels; got shape {probs.shape}"
        )
    if probs.shape[1] < 2:
        raise InvalidInputError("need at least two classes of probabilities")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= probs.shape[1]):
        raise InvalidInputError(f"labels must lie in 0..{probs.shape[1] - 1}")
    return y_true, probs


def predict_labels(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices: argmax, or for two classes P(positive) >= threshold when one is given."""
    probs = np.asarray(probs)
    if probs.shape[1] == 2 and threshold is not None:
        return (probs[:, 1] >= threshold).astype(int)
    return probs.argmax(axis=1)


def youden_threshold(y_true: Sequence[int], p_positive: Sequence[float]) -> float:
    """Decision threshold maximising Youden's J = sensitivity + specificity - 1 (ROC curve).

    Falls back to 0.5 when only one class is present, because no ROC curve exists then.
    """
    y_true = np.asarray(y_true).astype(int)
    if np.unique(y_true).size < 2:
        return 0.5
    fpr, tpr, thresholds = skm.roc_curve(y_true, np.asarray(p_positive, dtype=float))
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thresholds[best], 0.0), 1.0))


def pooled_threshold(thresholds: Sequence[float | None]) -> float | None:
    """One threshold for pooled out-of-fold predictions: the mean of the folds' own
    (None, i.e. argmax, when no fold chose one)."""
    values = [t for t in thresholds if t is not None]
    return float(np.mean(values)) if values else None


def expected_calibration_error(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE over equal-width confidence bins (Guo et al. 2017); scikit-learn has no ECE.

    Uses the top-1 confidence; |accuracy - confidence| per bin weighted by bin size.
    """
    y_true, probs = _check(np.asarray(y_true), probs)
    if y_true.size == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    bins = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, bins[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _auc_scores(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and PR-AUC (average precision); one-vs-rest macro for more than two classes.

    NaN when a class needed for the curve is missing from ``y_true`` (small test folds).
    """
    n_classes = probs.shape[1]
    present = np.unique(y_true)
    if n_classes == 2:
        if present.size < 2:
            return float("nan"), float("nan")
        return (
            float(skm.roc_auc_score(y_true, probs[:, 1])),
            float(skm.average_precision_score(y_true, probs[:, 1])),
        )
    onehot = np.eye(n_classes)[y_true]
    usable = [c for c in range(n_classes) if 0 < onehot[:, c].sum() < len(y_true)]
    if not usable:
        return float("nan"), float("nan")
    roc = np.mean([skm.roc_auc_score(onehot[:, c], probs[:, c]) for c in usable])
    pr = np.mean([skm.average_precision_score(onehot[:, c], probs[:, c]) for c in usable])
    return float(roc), float(pr)


def _specificity(confusion: np.ndarray) -> np.ndarray:
    """Per-class specificity TN / (TN + FP) from a confusion matrix (rows = truth)."""
    total = confusion.sum()
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    tn = total - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)


def compute_metrics(
    y_true: Sequence[int],
    probs: np.ndarray,
    threshold: float | None = None,
    with_confusion: bool = True,
) -> dict:
    """All scalar metrics (see ``SCALAR_METRICS``) plus the confusion matrix.

    For two classes precision / sensitivity / specificity are those of the positive class
    (index 1) at ``threshold`` (argmax when None); for more classes they are macro averages.

    Args:
        y_true: true class indices.
        probs: N×K probabilities (rows sum to one).
        threshold: decision threshold on P(class 1) for binary tasks.
        with_confusion: include ``confusion_matrix`` (a nested list); the bootstrap skips it.
    """
    y_true, probs = _check(np.asarray(y_true), probs)
    n_classes = probs.shape[1]
    labels = list(range(n_classes))
    y_pred = predict_labels(probs, threshold)
    confusion = skm.confusion_matrix(y_true, y_pred, labels=labels)
    specificity = _specificity(confusion)
    if n_classes == 2:
        precision, sensitivity = _positive_rates(y_true, y_pred)
        spec = specificity[1]
    else:
        precision, sensitivity, spec = _macro_rates(y_true, y_pred, specificity)
    roc_auc, pr_auc = _auc_scores(y_true, probs)
    result = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred)),
        "precision": float(precision),
        "sensitivity": float(sensitivity),
        "specificity": float(spec),
        "f1_macro": float(_f1_macro(y_true, y_pred)),
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "ece": expected_calibration_error(y_true, probs),
        "n": int(y_true.size),
    }
    if with_confusion:
        result["confusion_matrix"] = confusion.tolist()
    return result


def _positive_rates(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Binary precision and sensitivity of the positive class, NaN where undefined.

    With no positive image there is nothing to detect: sensitivity is undefined, as
    specificity is without negatives (it used to read 0, so a bootstrap resample of a perfect
    model that drew no malignant patient pulled the interval's low end to 0). Precision follows
    the macro rule (``_macro_rates``): undefined when the positive class is neither present nor
    predicted, 0 when present but never predicted.
    """
    positives, predicted = int((y_true == 1).sum()), int((y_pred == 1).sum())
    precision = (
        skm.precision_score(y_true, y_pred, pos_label=1, zero_division=0)
        if positives or predicted
        else math.nan
    )
    sensitivity = skm.recall_score(y_true, y_pred, pos_label=1) if positives else math.nan
    return float(precision), float(sensitivity)


def _macro_rates(
    y_true: np.ndarray, y_pred: np.ndarray, specificity: np.ndarray
) -> tuple[float, float, float]:
    """Macro precision, sensitivity and specificity over the classes each is defined for.

    A class absent from a test part (a small fold, a bootstrap resample) has no recall: it
    used to count as 0, so a perfect model scored 0.75 on a fold holding three of four
    classes. Sensitivity averages the classes present (it equals balanced accuracy),
    precision the classes present or predicted (a present class never predicted counts 0,
    so a model that never names a class is not flattered).
    """
    present = np.unique(y_true)
    precision = skm.precision_score(
        y_true, y_pred, labels=np.union1d(present, y_pred), average="macro", zero_division=0
    )
    sensitivity = skm.recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    defined = specificity[np.isfinite(specificity)]
    return float(precision), float(sensitivity), float(defined.mean()) if defined.size else np.nan


def _f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the classes present or predicted; a class in neither has no F1 (it
    used to count as 0, binary tasks included: a perfect model scored 0.5 on a bootstrap
    resample that drew no malignant patient)."""
    labels = np.union1d(y_true, y_pred)
    return skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's balanced accuracy, without its warning when a class is absent from y_pred."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skm.balanced_accuracy_score(y_true, y_pred)


def json_safe(value):
    """Replace NaN/inf by None recursively, so metrics.json stays valid strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def selection_score(metrics: dict, metric: str, mode: str) -> float:
    """The score that picks the kept epoch, higher is better (``mode`` max/min of ``metric``).

    A metric undefined on this validation set (AUC with one class present) falls back to
    balanced accuracy, which is always better higher, whatever ``mode`` says of the metric.
    """
    value = metrics.get(metric)
    if value is None or not math.isfinite(value):
        return float(metrics.get("balanced_accuracy", -math.inf))
    return float(value if mode == "max" else -value)
