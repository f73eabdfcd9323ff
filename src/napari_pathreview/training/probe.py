"""The patch classifier on a frozen encoder: ROI patches encoded once, a linear probe on them.

With ``lesion.frozen_encoder`` the encoder's weights never change (a foundation model on disk,
or a registered model; read once per run by :func:`frozen_encoder_state`, copied into each
fold's model by :func:`load_frozen_encoder`, which refuses another architecture): the ROIs
still supervise, through the instance classifier. Each round's patches are encoded once (the
centre ``patch_size`` of each sampled crop, no augmentation: a probe over fixed features), and
the classifier learns them in seconds on a CPU. Without this step the MIL head, which by
default keeps the instance classifier as the patches taught it, would pool the ranks of an
untrained classifier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_pathreview.training.mil import score_probabilities
from napari_pathreview.training.patches import PatchSet
from napari_pathreview.training.recipe import Recipe, RecipeError


@dataclass(frozen=True)
class ProbeFit:
    """What fitting the probe kept: its best validation score and the per-epoch history."""

    best_score: float | None
    history: list[dict]


def frozen_encoder_state(recipe: Recipe) -> dict:
    """The weights of ``lesion.frozen_encoder``, read from disk (once per run)."""
    from napari_pathreview.training.embeddings import load_encoder

    encoder = load_encoder(recipe.lesion.frozen_encoder)
    source = getattr(encoder.model, "encoder", getattr(encoder.model, "model", encoder.model))
    return source.state_dict()


def load_frozen_encoder(recipe: Recipe, model, state: dict) -> None:
    """Copy a frozen encoder's weights (``frozen_encoder_state``) into ``model.encoder``.

    Raises:
        RecipeError: the weights are of another architecture than the recipe's encoder.
    """
    refusal = RecipeError(
        f"lesion.frozen_encoder {recipe.lesion.frozen_encoder!r} does not fit model "
        f"encoder {recipe.model.kwargs.get('encoder', recipe.model.architecture)!r}"
    )
    try:
        missing = model.encoder.load_state_dict(state, strict=False)
    except RuntimeError as error:  # the same names with other shapes
        raise refusal from error
    if missing.missing_keys:
        raise refusal


def encode_patches(model, patches: PatchSet, device="cpu", batch: int = 256) -> np.ndarray:
    """(M, D) embeddings of the centre ``model.patch_size`` square of each sampled patch."""
    import torch

    from napari_pathreview.training.embeddings import model_input

    size = model.patch_size
    offset = (patches.pixels.shape[1] - size) // 2
    window = slice(offset, offset + size)
    model.eval().to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(patches), batch):
            crop = patches.pixels[start : start + batch, window, window]
            x = model_input(crop, model.spec.mean, model.spec.std, device)
            out.append(model.embed(x).float().cpu().numpy())
    width = model.head.dim
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def fit_probe(
    classifier,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    label_smoothing: float = 0.0,
    class_weights: Sequence[float] | None = None,
    metric: str = "roc_auc",
    mode: str = "max",
    seed: int = 0,
) -> ProbeFit:
    """Fit ``classifier`` (an ``nn.Linear``) in place on (embeddings, labels, weights).

    The fit starts afresh from a seeded initialisation, whatever the classifier held: a
    hard-negative round's probe depends on its own patches only (a convex fit needs no warm
    start, and the previous round's weights read in this round's standardised space would be a
    different function anyway). The epoch best on the validation patches by ``metric``
    (``mode`` max/min; balanced accuracy where the metric is undefined, as in the image
    trainer; ties by the loss) is loaded back.
    """
    import torch
    from torch.nn import functional

    torch.manual_seed(seed)
    classifier.reset_parameters()
    generator = torch.Generator().manual_seed(seed)
    x, y, w = (torch.as_tensor(a) for a in train)
    x, y, w = x.float(), y.long(), w.float()
    # features of any scale (a foundation model's, a random encoder's) are standardised for
    # the fit and the scaling folded into the weights afterwards, so the classifier still
    # reads the encoder's raw output
    spread = x.std(0) if len(x) > 1 else torch.ones(x.shape[1])  # one patch: no spread
    centre, scale = x.mean(0), spread.clamp_min(1e-6)
    x = (x - centre) / scale
    val_x, val_y = (torch.as_tensor(val[0]).float() - centre) / scale, np.asarray(val[1], int)
    cw = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[dict] = []
    best, best_state = (-math.inf, -math.inf), None
    for epoch in range(1, epochs + 1):
        classifier.train()
        total = 0.0
        for index in torch.randperm(len(y), generator=generator).split(batch_size):
            losses = functional.cross_entropy(
                classifier(x[index]), y[index], weight=cw, reduction="none",
                label_smoothing=label_smoothing,
            )  # fmt: skip
            loss = (losses * w[index]).sum() / w[index].sum().clamp_min(1e-12)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        entry = {"epoch": epoch, "train_loss": total / max(len(y), 1)}
        if len(val_y):
            with torch.no_grad():
                probs = torch.softmax(classifier(val_x), dim=1).numpy()
            score, neg_loss, metrics = score_probabilities(val_y, probs, metric, mode)
            entry.update(val_score=score, val_roc_auc=metrics.get("roc_auc"), val_loss=-neg_loss)
            rank = (score, neg_loss)  # ties (AUC 1.0 on easy patches) by the loss
        else:
            rank = (-entry["train_loss"], 0.0)
        history.append(entry)
        if rank > best:
            best = rank
            best_state = {k: v.detach().clone() for k, v in classifier.state_dict().items()}
    if best_state is not None:
        classifier.load_state_dict(best_state)
    with torch.no_grad():
        classifier.bias -= classifier.weight @ (centre / scale)
        classifier.weight /= scale
    classifier.eval()
    kept = best[0] if len(val_y) and math.isfinite(best[0]) else None
    return ProbeFit(kept, history)


def train_probe(
    recipe: Recipe, model, train: PatchSet, val: PatchSet, class_weights, device="cpu"
) -> ProbeFit:
    """A lesion recipe's probe round: its optimiser, loss and early-stopping settings."""
    fit = fit_probe(
        model.head.classifier.cpu(),
        (encode_patches(model, train, device), train.labels, train.weights),
        (encode_patches(model, val, device), val.labels),
        epochs=recipe.total_epochs,
        lr=recipe.optim.lr,
        weight_decay=recipe.optim.weight_decay,
        batch_size=recipe.optim.batch_size,
        label_smoothing=recipe.loss.label_smoothing,
        class_weights=class_weights,
        metric=recipe.early_stopping.metric,
        mode=recipe.early_stopping.mode,
        seed=recipe.seed,
    )
    model.cpu()
    return fit
