"""A woman's two films read together: a film's lesion evidence against her other film's.

A radiologist compares the left breast with the right: what both share (density, exposure,
the film's processing) is not a lesion. MIAS holds two films per woman (mdb001/mdb002 are her
left and right), so a film's lesion log-odds minus her other film's cancels what the two share.
``lesion.bilateral: true`` turns that difference into the run's two-film decision: one slope and
one offset per fold, fitted on the fold's validation films, never on its held-out ones.

The registered model still reads one film at a time; the two-film decision is reported beside
its figures (``metrics.json`` → ``bilateral_decision``), not in place of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# normal : abnormal total sample weight when fitting, as for three balanced classes with the
# two lesion classes merged (what balanced accuracy over normal / benign / malignant rewards)
ABNORMAL_WEIGHT = 2.0


@dataclass(frozen=True)
class BilateralCalibration:
    """P(abnormal) = sigmoid(slope · d + intercept), d = film log-odds − other film log-odds."""

    slope: float = 1.0
    intercept: float = 0.0
    fitted: bool = False  # False: the validation films lacked a class; the identity is used
    n_films: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def lesion_log_odds(probs: np.ndarray, negative: int) -> np.ndarray:
    """Per film, log((1 − p_negative) / p_negative): the evidence for any lesion class."""
    p_negative = np.clip(np.asarray(probs, float)[:, negative], 1e-7, 1 - 1e-7)
    return np.log1p(-p_negative) - np.log(p_negative)


def film_partners(patients: Sequence[str]) -> dict[int, int]:
    """Index → index of the same woman's other film, for women with exactly two films here.

    A woman with one film (or more than two: not a left/right pair) has no partner.
    """
    films: dict[str, list[int]] = {}
    for i, patient in enumerate(patients):
        films.setdefault(str(patient), []).append(i)
    partners: dict[int, int] = {}
    for pair in films.values():
        if len(pair) == 2:
            a, b = pair
            partners[a], partners[b] = b, a
    return partners


def log_odds_difference(
    probs: np.ndarray, patients: Sequence[str], negative: int
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the paired films, their log-odds minus their partner's)."""
    partners = film_partners(patients)
    paired = np.asarray(sorted(partners), int)
    score = lesion_log_odds(probs, negative)
    if paired.size == 0:
        return paired, np.zeros(0)
    return paired, score[paired] - score[[partners[i] for i in paired]]


def fit_bilateral(
    probs: np.ndarray, labels: Sequence[int], patients: Sequence[str], negative: int
) -> BilateralCalibration:
    """Fit the slope and offset on (validation) films whose labels are known.

    L2-regularised logistic regression (sklearn's default strength) of abnormal vs normal on the
    log-odds difference, normal and abnormal films weighted 1 : ``ABNORMAL_WEIGHT`` in total.
    Without both classes among the paired films the identity (slope 1, offset 0) is returned,
    marked ``fitted=False``.
    """
    from sklearn.linear_model import LogisticRegression

    paired, difference = log_odds_difference(probs, patients, negative)
    abnormal = (np.asarray(labels, int)[paired] != negative).astype(int)
    if np.unique(abnormal).size < 2:
        return BilateralCalibration(n_films=int(paired.size))
    n_abnormal = abnormal.sum()
    n_normal = abnormal.size - n_abnormal
    weights = np.where(abnormal == 1, ABNORMAL_WEIGHT / n_abnormal, 1 / n_normal)
    weights *= abnormal.size / weights.sum()  # as many films' worth as there are films
    fit = LogisticRegression().fit(difference[:, None], abnormal, sample_weight=weights)
    return BilateralCalibration(
        float(fit.coef_[0, 0]), float(fit.intercept_[0]), True, int(paired.size)
    )


def bilateral_probs(
    probs: np.ndarray,
    patients: Sequence[str],
    negative: int,
    calibration: BilateralCalibration,
) -> np.ndarray:
    """Class probabilities of the two-film decision.

    P(abnormal) comes from the film's log-odds difference with her other film; the lesion
    classes share it in the film's own proportions. A film without a partner keeps its own
    probabilities.
    """
    probs = np.asarray(probs, float)
    out = probs.copy()
    paired, difference = log_odds_difference(probs, patients, negative)
    if paired.size == 0:
        return out
    abnormal = 1.0 / (1.0 + np.exp(-(calibration.slope * difference + calibration.intercept)))
    lesion = np.ones(probs.shape[1], bool)
    lesion[negative] = False
    shares = probs[np.ix_(paired, lesion)]
    total = shares.sum(axis=1, keepdims=True)
    # a film whose lesion probabilities all underflowed splits its share evenly
    shares = np.where(total > 0, shares / np.where(total > 0, total, 1), 1 / lesion.sum())
    out[paired, negative] = 1.0 - abnormal
    out[np.ix_(paired, lesion)] = shares * abnormal[:, None]
    return out
