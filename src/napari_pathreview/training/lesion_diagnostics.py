"""Diagnostics of a lesion run: where its held-out figures are lost.

Two questions a pooled AUC cannot answer: whether the lesion classes (benign vs malignant)
are told apart at the lesion itself, where perfect localisation would point the pooling
(``lesion_class_separation``), and whether comparing a film with the woman's other film
carries abnormal-vs-normal signal (``lesion_detection``). Nothing here is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_pathreview.training.metrics import compute_metrics
from napari_pathreview.training.statistics import (
    Resampling,
    bootstrap_report,
    centred_interval,
    resampled_unit,
    resampler,
    summarize_folds,
)

if TYPE_CHECKING:
    from napari_pathreview.io.patients import FilmSide


def lesion_class_separation(
    rows: Sequence[dict],
    classes: Sequence[str],
    negative: int,
    n_resamples: int,
    seed: int,
    group_of: Mapping[str, str] | None = None,
) -> dict | None:
    """How well the held-out lesions' own patches separate the lesion classes (e.g. benign vs
    malignant), beside the pooled image probabilities of the same images.

    The ROI patches are what perfect localisation would hand the pooling: when their AUC is
    near 0.5 too, the encoder, not the localisation or the pooling, is what falls short.
    The intervals draw each row's split group (``group_of``: path → group, as the run's test
    intervals draw; None draws single images). None with fewer than two lesion classes.
    """
    lesion = [c for c in range(len(classes)) if c != negative]
    kept = [r for r in rows if r["label"] != negative]
    if len(lesion) < 2 or not kept:
        return None
    labels = np.asarray([lesion.index(r["label"]) for r in kept])
    groups = None if group_of is None else [group_of.get(r["path"], r["path"]) for r in kept]
    out: dict = {"classes": [classes[c] for c in lesion], "n_images": len(kept)}
    for name, key in (("roi_patches", "roi_patch_probs"), ("pooled_image", "probs")):
        probs = np.asarray([r[key] for r in kept], float)[:, lesion]
        probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
        auc = compute_metrics(labels, probs, None, with_confusion=False)["roc_auc"]
        ci = bootstrap_report(labels, probs, None, Resampling(n_resamples, seed, groups))
        out[name] = {
            "roc_auc": auc,
            "ci95": ci["ci95"]["roc_auc"],
            "ci_n_resamples": ci["ci_n_resamples"]["roc_auc"],
        }
    return out


def lesion_detection(
    labels: Sequence[int],
    probs: np.ndarray,
    patients: Sequence[str],
    folds: Sequence[int],
    negative: int,
    n_resamples: int,
    seed: int,
    *,
    groups: Sequence[str] | None,
    group_by: str = "patient",
    bilateral: bool = True,
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> dict:
    """Abnormal-vs-normal ROC-AUC of the held-out films, alone and against the woman's other film.

    A film's score is its lesion log-odds, log((1 − p_negative) / p_negative). The bilateral
    score subtracts the score of the film it is paired with (``bilateral.pair_films``: a
    woman's two held-out films, as in MIAS, or her left and right film of one view where
    ``sides``, each film's ``io.patients.FilmSide``, say so; rows of one of ``films`` are one
    film), as a radiologist compares left
    with right: it would cancel what both breasts share (density, exposure). Nothing is fitted
    here: it tells whether the comparison carries signal; ``lesion.bilateral`` builds the
    two-film decision from it (``napari_pathreview.bilateral``).

    Pooled out-of-fold scores come from one model per fold, each on its own scale, and both
    films of a woman are held out by the same fold: pooled, the subtraction also cancels the
    fold models' offsets. ``within_folds`` compares inside each fold, where only the left/right
    comparison acts. Pooled intervals draw what the run's own test intervals draw: ``groups``,
    each film's split group (``statistics.bootstrap_groups``: women, or None, single films,
    for a leaky image-level split); ``ci_resampled`` names them. ``bilateral=False``
    (slides: no left and right) skips the comparison.
    """
    from napari_pathreview.bilateral import lesion_log_odds, log_odds_difference

    abnormal = (np.asarray(labels, int) != negative).astype(int)
    score = lesion_log_odds(probs, negative)
    patients = np.asarray([str(p) for p in patients])
    drawn = None if groups is None else np.asarray([str(g) for g in groups])
    folds = np.asarray(folds, int)
    out: dict = {
        "ci_resampled": resampled_unit(groups, group_by),
        "pooled": _grouped_auc(abnormal, score, drawn, n_resamples, seed),
        "within_folds": _per_fold_auc(abnormal, score, folds),
        "bilateral": None,
    }
    paired, minus_other = (
        log_odds_difference(probs, patients, negative, sides, films) if bilateral else ([], [])
    )
    if len(paired) == 0:
        return out
    y, fold_of = abnormal[paired], folds[paired]
    units = None if drawn is None else drawn[paired]
    out["bilateral"] = {
        "n_women": len(set(patients[paired])),  # a four-view exam is two pairs of one woman
        "pooled": {
            "film_alone": _grouped_auc(y, score[paired], units, n_resamples, seed),
            "minus_other_film": _grouped_auc(y, minus_other, units, n_resamples, seed),
        },
        "within_folds": {
            "film_alone": _per_fold_auc(y, score[paired], fold_of),
            "minus_other_film": _per_fold_auc(y, minus_other, fold_of),
        },
    }
    return out


def _per_fold_auc(labels: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> dict:
    """ROC-AUC inside each fold (folds with both classes), summarised as every run's folds are."""
    from sklearn.metrics import roc_auc_score

    per_fold = [
        float(roc_auc_score(labels[folds == f], scores[folds == f]))
        for f in np.unique(folds)
        if np.unique(labels[folds == f]).size == 2
    ]
    summary = summarize_folds([{"roc_auc": auc} for auc in per_fold])["roc_auc"]
    return {"per_fold": per_fold, **summary}


def _grouped_auc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None, n_resamples: int, seed: int
) -> dict:
    """ROC-AUC with a bootstrap interval (``centred_interval``) drawing whole ``groups`` (or
    single images for None) as
    ``statistics.bootstrap_ci`` does, and ``ci_n_resamples``: the resamples holding both
    classes, which the interval rests on."""
    from sklearn.metrics import roc_auc_score

    out = {"roc_auc": math.nan, "ci95": [math.nan, math.nan], "n_images": int(labels.size)}
    if np.unique(labels).size < 2:
        return {**out, "ci_n_resamples": 0}
    out["roc_auc"] = float(roc_auc_score(labels, scores))
    draw = resampler(labels.size, groups)
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(n_resamples):
        idx = draw(rng)
        if np.unique(labels[idx]).size == 2:
            resampled.append(roc_auc_score(labels[idx], scores[idx]))
    out["ci95"] = list(centred_interval(resampled, out["roc_auc"]))
    out["ci_n_resamples"] = len(resampled)
    return out
