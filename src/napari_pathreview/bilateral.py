"""A woman's two films read together: a film's lesion evidence against her other film's.

A radiologist compares the left breast with the right: what both share (density, exposure,
the film's processing) is not a lesion. MIAS holds two films per woman (mdb001/mdb002 are her
left and right), so a film's lesion log-odds minus her other film's cancels what the two share.
``lesion.bilateral: true`` turns that difference into the run's two-film decision: one slope and
one offset per fold, fitted on the fold's validation films, never on its held-out ones.

The run reports the decision beside the one-film figures (``metrics.json`` →
``bilateral_decision``); the registered model's card carries its calibration (``ModelCard.
bilateral``) so that ``pathreview predict --two-film`` and the Analyze dock can decide a film
against the woman's other film (``inference.two_film``). Plain numpy: training, the registry and
inference share this one definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_pathreview.errors import InvalidInputError

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

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "bilateral") -> BilateralCalibration:
        """Read back :meth:`to_dict`; a missing, non-finite or mistyped value is refused,
        naming ``where.key``."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{where} must be a mapping, got {type(data).__name__}")
        values = {}
        for key in ("slope", "intercept"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(f"{where}.{key} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidInputError(f"{where}.{key} must be finite, got {value}")
            values[key] = float(value)
        fitted, n_films = data.get("fitted", False), data.get("n_films", 0)
        if not isinstance(fitted, bool):
            raise InvalidInputError(f"{where}.fitted must be true or false, got {fitted!r}")
        if isinstance(n_films, bool) or not isinstance(n_films, int) or n_films < 0:
            raise InvalidInputError(f"{where}.n_films must be a count, got {n_films!r}")
        return cls(values["slope"], values["intercept"], fitted, n_films)


def card_entry(calibration: BilateralCalibration, negative_class: str, fitted_on: str) -> dict:
    """What a model card stores (``ModelCard.bilateral``): the calibration, which class is
    "no lesion", and which films it was fitted on."""
    return {**calibration.to_dict(), "negative_class": negative_class, "fitted_on": fitted_on}


def read_card_entry(entry: Mapping, classes: Sequence[str]) -> tuple[BilateralCalibration, int]:
    """(calibration, index of the negative class) of a card's entry, validated against the
    card's classes; errors name the key."""
    calibration = BilateralCalibration.from_dict(entry)
    negative = entry.get("negative_class")
    if negative not in classes:
        raise InvalidInputError(
            f"bilateral.negative_class must be one of the classes {tuple(classes)}, "
            f"got {negative!r}"
        )
    if not isinstance(entry.get("fitted_on", ""), str):
        raise InvalidInputError(f"bilateral.fitted_on must be text, got {entry['fitted_on']!r}")
    unknown = sorted(set(entry) - {*calibration.to_dict(), "negative_class", "fitted_on"})
    if unknown:
        raise InvalidInputError(f"unknown bilateral key(s) {unknown}")
    return calibration, list(classes).index(negative)


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
