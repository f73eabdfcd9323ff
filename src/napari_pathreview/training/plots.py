"""PNG figures of a run (matplotlib's Agg backend: no display needed, safe in CI and workers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict], path: Path, metric: str = "balanced_accuracy") -> Path:
    """Training/validation loss and one validation metric per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(
        epochs,
        [np.nan if h["val_loss"] is None else h["val_loss"] for h in history],
        label="validation",
    )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    values = [h.get(f"val_{metric}") for h in history]
    ax_metric.plot(epochs, [np.nan if v is None else v for v in values], color="tab:green")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _one_vs_rest(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]):
    """(name, truth, score) per curve: the positive class if binary, else every class."""
    if probs.shape[1] == 2:
        return [(classes[1], (y_true == 1).astype(int), probs[:, 1])]
    return [(name, (y_true == c).astype(int), probs[:, c]) for c, name in enumerate(classes)]


def plot_roc(y_true, probs, classes: Sequence[str], path: Path) -> Path:
    """ROC curve(s) with AUC in the legend (sklearn's roc_curve)."""
    from sklearn.metrics import auc, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, truth, score in _one_vs_rest(np.asarray(y_true), np.asarray(probs), classes):
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, score)
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pr(y_true, probs, classes: Sequence[str], path: Path) -> Path:
    """Precision-recall curve(s) with average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, truth, score in _one_vs_rest(np.asarray(y_true), np.asarray(probs), classes):
        if 0 < truth.sum() < len(truth):
            precision, recall, _ = precision_recall_curve(truth, score)
            ap = average_precision_score(truth, score)
            ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(confusion, classes: Sequence[str], path: Path) -> Path:
    """Confusion matrix (rows = truth) with counts in the cells."""
    plt = _pyplot()
    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(classes), 1.0 + 0.6 * len(classes)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true")
    for (r, c), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        ax.text(c, r, str(value), ha="center", va="center", color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
