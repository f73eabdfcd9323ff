"""A woman's two films read together: a film's lesion evidence against her other film's.

A radiologist compares the left breast with the right: what both share (density, exposure,
the film's processing) is not a lesion. MIAS holds two films per woman (mdb001/mdb002 are her
left and right), so a film's lesion log-odds minus her other film's cancels what the two share.
``lesion.bilateral: true`` turns that difference into the run's two-film decision: one slope and
one offset per fold, fitted on the fold's validation films, never on its held-out ones.

The run reports the decision beside the one-film figures (``metrics.json`` →
``bilateral_decision``); the registered model's card carries its calibration (``ModelCard.
bilateral``) so that ``pathreview predict --two-film`` and the Analyze dock can decide a film
against the woman's other film (``inference.two_film``). Which films are read together is one
rule too (:func:`pair_films`): a woman's two films, or in a DICOM four-view exam her left and
right film of each view. Plain numpy: training, the registry and inference share this one
definition.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_pathreview.errors import InvalidInputError

if TYPE_CHECKING:  # the registry reads cards through this module: it needs no image reader
    from napari_pathreview.io.patients import FilmSide

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


def pair_films(
    patients: Sequence[str | None],
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> tuple[dict[int, int], dict[int, str]]:
    """Which films are read together: (index → partner, index → why it stands alone).

    The one pairing rule of training (:func:`film_partners`) and inference
    (``inference.two_film``). A woman's two films are a pair unless the files say they show
    one breast, or two views (``sides``: each film's ``io.patients.FilmSide``; omitted, nothing
    is said, as for MIAS, whose two films per woman are her left and right). With more films
    (a four-view exam: left and right, CC and MLO) each view that holds one left and one right
    film is a pair. Nothing is guessed where the files say too little.

    ``films`` (each row's image, e.g. its path) makes rows of one image one film: a review
    export lists an image once per reviewer, and an image must never be read against itself.
    Every row of a paired film gets the first row of the other film as its partner.
    """
    if sides is None:
        from napari_pathreview.io.patients import FilmSide

        sides = [FilmSide()] * len(patients)
    women: dict[str, list[int]] = {}
    alone: dict[int, str] = {}
    for i, patient in enumerate(patients):
        if patient is None:
            alone[i] = "the file names no patient (give --patients)"
        else:
            women.setdefault(str(patient), []).append(i)
    partners: dict[int, int] = {}
    for woman, rows in women.items():
        copies = _rows_by_film(rows, films)  # first row of each image → all its rows
        groups = {"": list(copies)}
        if len(copies) > 2 and all(sides[i].view for i in copies):
            groups = {}
            for i in copies:
                groups.setdefault(str(sides[i].view), []).append(i)
        for view, group in groups.items():
            why = not_a_pair(woman, view, [sides[i] for i in group])
            if why and len(group) == 1 and len(copies[group[0]]) > 1:
                why += f" (its {len(copies[group[0]])} rows are one image)"
            if why:
                alone.update(dict.fromkeys([row for i in group for row in copies[i]], why))
                continue
            partners.update(dict.fromkeys(copies[group[0]], group[1]))
            partners.update(dict.fromkeys(copies[group[1]], group[0]))
    return partners, alone


def _rows_by_film(rows: list[int], films: Sequence[str] | None) -> dict[int, list[int]]:
    """One woman's rows grouped by image: first row of each image → its rows, in order."""
    if films is None:
        return {row: [row] for row in rows}
    first_of: dict[str, int] = {}
    copies: dict[int, list[int]] = {}
    for row in rows:
        first = first_of.setdefault(os.path.normpath(str(films[row])), row)
        copies.setdefault(first, []).append(row)
    return copies


def not_a_pair(woman: str, view: str, sides: Sequence[FilmSide]) -> str:
    """Why these films of one woman (in one ``view``, "" for any) are not a left/right pair."""
    where = f"patient {woman}" + (f" in view {view}" if view else "")
    if len(sides) == 1:
        return f"no other film of {where}"
    if len(sides) != 2:
        return f"{len(sides)} films of {where}: which two are her left and right is not said"
    (a, b) = sides
    if a.laterality and a.laterality == b.laterality:
        return f"both films of {where} show the {a.laterality} breast"
    if a.view and b.view and a.view != b.view:
        return f"the two films of {where} are different views ({a.view}, {b.view})"
    return ""


def film_partners(
    patients: Sequence[str | None],
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> dict[int, int]:
    """Index → index of the film read with it (:func:`pair_films`): a woman's left and right
    film (of one view, where ``sides`` says which film is which).

    A woman with one film, or more than two that ``sides`` do not sort into left/right pairs,
    has no partner.
    """
    return pair_films(patients, sides, films)[0]


def log_odds_difference(
    probs: np.ndarray,
    patients: Sequence[str | None],
    negative: int,
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the paired films (:func:`film_partners`), their log-odds minus their
    partner's)."""
    partners = film_partners(patients, sides, films)
    paired = np.asarray(sorted(partners), int)
    score = lesion_log_odds(probs, negative)
    if paired.size == 0:
        return paired, np.zeros(0)
    return paired, score[paired] - score[[partners[i] for i in paired]]


def fit_bilateral(
    probs: np.ndarray,
    labels: Sequence[int],
    patients: Sequence[str | None],
    negative: int,
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> BilateralCalibration:
    """Fit the slope and offset on (validation) films whose labels are known.

    L2-regularised logistic regression (sklearn's default strength) of abnormal vs normal on the
    log-odds difference, normal and abnormal films weighted 1 : ``ABNORMAL_WEIGHT`` in total.
    Without both classes among the paired films the identity (slope 1, offset 0) is returned,
    marked ``fitted=False``.
    """
    from sklearn.linear_model import LogisticRegression

    paired, difference = log_odds_difference(probs, patients, negative, sides, films)
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
    patients: Sequence[str | None],
    negative: int,
    calibration: BilateralCalibration,
    sides: Sequence[FilmSide] | None = None,
    films: Sequence[str] | None = None,
) -> np.ndarray:
    """Class probabilities of the two-film decision.

    P(abnormal) comes from the film's log-odds difference with the film it is paired with
    (:func:`film_partners`); the lesion classes share it in the film's own proportions. A film
    without a partner keeps its own probabilities.
    """
    probs = np.asarray(probs, float)
    out = probs.copy()
    paired, difference = log_odds_difference(probs, patients, negative, sides, films)
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
