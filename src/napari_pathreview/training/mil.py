"""Training a MIL head on cached bags, and turning patch grids into image-sized maps.

Bags differ in size (images and slides differ), so the head sees one bag per step; with a few
hundred bags of a few hundred 512-d embeddings an epoch is a fraction of a second on a CPU.
Sample weights (review disagreements) scale each bag's loss; the epoch with the best validation
score (the recipe's ``early_stopping`` metric, then negative loss) is kept, as the image trainer
does — and the head as it came from patch training counts as epoch 0, so bag training never
makes it worse.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_pathreview.models.mil import grid_to_image, lesion_probability
from napari_pathreview.training.metrics import compute_metrics, selection_score

__all__ = [
    "BagPredictions",
    "grid_to_image",
    "image_maps",
    "lesion_probability",
    "predict_bags",
    "score_probabilities",
    "train_mil_head",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BagPredictions:
    """Per bag: class probabilities, patch probabilities (N×C) and pooling weights (N)."""

    probs: np.ndarray  # (B, C)
    patch_probs: tuple[np.ndarray, ...]
    attention: tuple[np.ndarray, ...]


def image_maps(bag_patch_probs, attention, grid, shape, patch, stride, negative) -> dict:
    """The lesion-probability and attention maps of one image, painted at its size."""
    return {
        "patch_map": grid_to_image(
            lesion_probability(bag_patch_probs, negative), grid, shape, patch, stride
        ),
        "attention_map": grid_to_image(attention, grid, shape, patch, stride),
    }


def predict_bags(head, bags: Sequence[np.ndarray]) -> BagPredictions:
    """Run a MIL head over bags one at a time (no gradient)."""
    import torch

    head.eval()
    probs, patch, attention = [], [], []
    with torch.no_grad():
        for bag in bags:
            out = head(torch.as_tensor(bag, dtype=torch.float32).unsqueeze(0))
            probs.append(torch.softmax(out.logits, 1)[0].numpy())
            patch.append(torch.softmax(out.instance_logits, -1)[0].numpy())
            attention.append(out.attention[0].numpy())
    width = head.classifier.out_features
    stacked = np.stack(probs) if probs else np.zeros((0, width))
    return BagPredictions(stacked, tuple(patch), tuple(attention))


def _score(
    head, bags, labels, metric: str = "balanced_accuracy", mode: str = "max"
) -> tuple[float, float, dict]:
    """(selection score, −loss, metrics): higher is better in both scores.

    As in the image trainer, a metric that is undefined on this validation set (AUC with one
    class present) falls back to balanced accuracy; "loss" is the bags' cross-entropy.
    """
    return score_probabilities(labels, predict_bags(head, bags).probs, metric, mode)


def score_probabilities(
    labels, probs: np.ndarray, metric: str, mode: str
) -> tuple[float, float, dict]:
    """(selection score, −loss, metrics) of validation probabilities; see ``_score``."""
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    loss = float(-np.log(p).mean())
    metrics = compute_metrics(labels, probs, None, with_confusion=False)
    metrics["loss"] = loss
    return selection_score(metrics, metric, mode), -loss, metrics


def train_mil_head(
    head,
    bags: Sequence[np.ndarray],
    labels: Sequence[int],
    val_bags: Sequence[np.ndarray],
    val_labels: Sequence[int],
    weights: Sequence[float] | None = None,
    epochs: int = 40,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    class_weights: Sequence[float] | None = None,
    seed: int = 0,
    train_classifier: bool = False,
    metric: str = "balanced_accuracy",
    mode: str = "max",
) -> list[dict]:
    """Fit ``head`` (a ``models.mil.MILHead``) in place; returns the per-epoch history.

    By default the instance classifier keeps the weights it learned from ROI patches and only
    the attention and the class biases (the bag-level prior) train: fitting the classifier to
    bag labels lets a few hundred bags overwrite what the patch map means. The weights of the
    best validation epoch by ``metric`` (``mode`` max/min; ties by loss) are loaded back
    before returning; each history entry's ``val_score`` is that score, signed so that higher
    is better (the image trainer's convention).
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, int)
    val_labels = np.asarray(val_labels, int)
    weights = np.ones(len(bags)) if weights is None else np.asarray(weights, float)
    cw = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
    params = _trainable(head, train_classifier)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    tensors = [torch.as_tensor(b, dtype=torch.float32).unsqueeze(0) for b in bags]

    # the untrained head (the patch classifier's own decision) is the first candidate: bag
    # training may only replace it by something better on validation, never by a collapse
    def scored(epoch: int, train_loss: float | None) -> tuple[float, float]:
        score, neg_loss, metrics = _score(head, val_bags, val_labels, metric, mode)
        history.append(_val_entry(epoch, train_loss, score, neg_loss, metrics))
        return score, neg_loss

    history: list[dict] = []
    best = scored(0, None) if len(val_bags) else None
    best_state = copy.deepcopy(head.state_dict())
    for epoch in range(epochs):
        total = _train_epoch(head, tensors, labels, weights, cw, optimizer, rng)
        train_loss = total / max(1, len(tensors))
        if len(val_bags):
            score = scored(epoch + 1, train_loss)
        else:
            score = (0.0, -total)
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_score": None})
        if best is None or score > best:
            best, best_state = score, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    log.info("MIL head: best validation (%s, -loss) %s over %d epochs", metric, best, epochs)
    return history


def _trainable(head, train_classifier: bool) -> list:
    """The head's parameters bag training may move: all of them, or (the default) only the
    attention and the classifier's bias, so bag labels cannot overwrite what the ROI-trained
    patch classifier means."""
    if train_classifier:
        return list(head.parameters())
    params = [head.classifier.bias]
    return params + (list(head.attention.parameters()) if head.attention is not None else [])


def _train_epoch(head, tensors, labels, weights, class_weights, optimizer, rng) -> float:
    """One pass over the bags, one bag per step (bags differ in size), in a seeded order;
    each bag's loss scaled by its sample weight. Returns the summed loss."""
    import torch

    head.train()
    total = 0.0
    for i in rng.permutation(len(tensors)):
        out = head(tensors[i])
        loss = torch.nn.functional.cross_entropy(
            out.logits, torch.tensor([labels[i]]), weight=class_weights
        ) * float(weights[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return total


def _val_entry(
    epoch: int, train_loss: float | None, score: float, neg_loss: float, metrics: dict
) -> dict:
    """One epoch's history entry once validation scored it (the run's training log)."""
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_score": score,
        "val_balanced_accuracy": float(metrics["balanced_accuracy"]),
        "val_roc_auc": metrics.get("roc_auc"),
        "val_loss": -neg_loss,
    }
