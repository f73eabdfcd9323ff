"""The two-film decision: each mammogram read against the same woman's other film."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathreview.bilateral import (
    BilateralCalibration,
    bilateral_probs,
    film_partners,
    fit_bilateral,
    lesion_log_odds,
)

NORMAL = 0


def film_probs(log_odds, lesion_share=(0.5, 0.5)) -> np.ndarray:
    """normal / benign / malignant probabilities with the given lesion log-odds."""
    p_normal = 1.0 / (1.0 + np.exp(np.asarray(log_odds, float)))
    benign, malignant = lesion_share
    return np.stack([p_normal, (1 - p_normal) * benign, (1 - p_normal) * malignant], axis=1)


def women_with_density(density: dict[str, float], lesion_of: dict[str, int]):
    """Two films per woman: her density lifts both, a lesion (class 1 or 2) adds 2 to the first."""
    labels, women, scores = [], [], []
    for woman, base in density.items():
        lesion = lesion_of.get(woman, 0)
        labels += [lesion, 0]
        women += [woman, woman]
        scores += [base + (2.0 if lesion else 0.0), base]
    return np.asarray(labels), women, np.asarray(scores)


def test_a_film_is_paired_with_the_other_film_of_the_same_woman_only():
    assert film_partners(["a", "b", "a", "c", "c", "c"]) == {0: 2, 2: 0}
    assert film_partners(["a"]) == {}


def test_log_odds_are_the_evidence_for_any_lesion_class():
    probs = film_probs([-1.0, 0.0, 2.5], lesion_share=(0.9, 0.1))
    assert lesion_log_odds(probs, NORMAL) == pytest.approx([-1.0, 0.0, 2.5])


def test_dense_normal_breasts_are_no_longer_called_abnormal():
    density = {"w0": 3.0, "w1": 0.0, "w2": 2.5, "w3": -1.0, "w4": 1.0, "w5": 0.5}
    lesions = {"w1": 2, "w3": 1, "w5": 2}
    labels, women, scores = women_with_density(density, lesions)
    probs = film_probs(scores)
    calibration = fit_bilateral(probs, labels, women, NORMAL)
    assert calibration.fitted and calibration.slope > 0 and calibration.n_films == 12
    decided = bilateral_probs(probs, women, NORMAL, calibration)
    abnormal = labels != NORMAL
    alone = probs.argmax(1) != NORMAL
    both = decided.argmax(1) != NORMAL
    assert alone[~abnormal].sum() >= 3  # the dense women's normal films look like lesions alone
    assert (both == abnormal).all()  # against the other film, every film is called right
    assert decided.sum(axis=1) == pytest.approx(np.ones(len(labels)))


def test_the_lesion_classes_keep_the_films_own_proportions():
    probs = film_probs([1.0, -1.0], lesion_share=(0.8, 0.2))
    decided = bilateral_probs(probs, ["a", "a"], NORMAL, BilateralCalibration(1.0, 0.0))
    assert decided[:, 1] / decided[:, 2] == pytest.approx([4.0, 4.0])
    assert decided[0, NORMAL] == pytest.approx(1 / (1 + np.exp(2.0)))  # d = 1 − (−1) = 2


def test_a_film_without_a_partner_keeps_its_own_probabilities():
    probs = film_probs([0.3, 1.0, -1.0])
    decided = bilateral_probs(probs, ["a", "b", "b"], NORMAL, BilateralCalibration(2.0, -1.0))
    assert decided[0] == pytest.approx(probs[0])
    assert decided[1] != pytest.approx(probs[1])


def test_validation_films_of_one_class_leave_the_identity_and_say_so():
    labels, women, scores = women_with_density({"a": 0.0, "b": 1.0}, {})
    calibration = fit_bilateral(film_probs(scores), labels, women, NORMAL)
    assert not calibration.fitted
    assert (calibration.slope, calibration.intercept) == (1.0, 0.0)
    assert calibration.n_films == 4


def test_normal_and_abnormal_films_weigh_one_to_two_whatever_their_counts():
    # one lesion film among many normal ones: unweighted, the offset would call nearly every
    # film normal; weighted as three balanced classes, a film whose lesion evidence exceeds its
    # partner's by the lesion's margin is called abnormal
    density = {f"n{i}": float(i % 3) for i in range(9)} | {"l0": 0.0, "l1": 1.0}
    labels, women, scores = women_with_density(density, {"l0": 1, "l1": 2})
    probs = film_probs(scores)
    calibration = fit_bilateral(probs, labels, women, NORMAL)
    decided = bilateral_probs(probs, women, NORMAL, calibration)
    assert (decided[labels != NORMAL].argmax(1) != NORMAL).all()


def test_rows_of_one_image_are_one_film_never_its_own_partner():
    """A review export lists an image once per reviewer: its rows are one film, read against
    the woman's other image."""
    rows = ["a/left.png", "a/left.png", "a/right.png", "b/only.png", "b/only.png"]
    women = ["a", "a", "a", "b", "b"]
    assert film_partners(women, films=rows) == {0: 2, 1: 2, 2: 0}


def test_an_image_listed_twice_is_not_compared_with_itself():
    probs = film_probs([2.0, 2.0, -1.0])
    women = ["b", "b", "c"]
    kept = bilateral_probs(
        probs,
        women,
        NORMAL,
        BilateralCalibration(2.0, -1.0, True, 10),
        films=["b.png", "b.png", "c.png"],
    )
    assert kept == pytest.approx(probs)  # no other film: the film's own probabilities
