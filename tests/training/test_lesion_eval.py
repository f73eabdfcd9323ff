"""How a lesion run reads its held-out lesions: the ROI's own patches against the pooled image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.explain.metrics import roi_scores
from napari_pathreview.training.lesion_diagnostics import (
    lesion_class_separation,
    lesion_detection,
)
from napari_pathreview.training.lesion_eval import perfect_patch_map, roi_patch_probs

CLASSES = ["normal", "benign", "malignant"]


def grid_probs(values: dict[tuple[int, int], list[float]], grid=(3, 3)) -> np.ndarray:
    """Per-patch class probabilities: 'normal' everywhere except the given grid cells."""
    probs = np.tile([1.0, 0.0, 0.0], (grid[0] * grid[1], 1))
    for (r, c), p in values.items():
        probs[r * grid[1] + c] = p
    return probs


def test_roi_patches_are_those_centred_inside_the_roi():
    # 3×3 grid of 16-px patches at stride 8 over a 32² image; centres at 8, 16, 24
    probs = grid_probs({(1, 1): [0.0, 0.2, 0.8], (1, 2): [0.0, 0.6, 0.4]})
    mask = np.zeros((32, 32), bool)
    mask[14:27, 14:27] = True  # holds the centres (16, 16), (16, 24), (24, 16), (24, 24)
    got = roi_patch_probs(probs, (3, 3), mask, 16, 8)
    expected = np.mean([[0, 0.2, 0.8], [0, 0.6, 0.4], [1, 0, 0], [1, 0, 0]], axis=0)
    np.testing.assert_allclose(got, expected)


def test_an_roi_between_patch_centres_takes_the_patch_covering_most_of_it():
    probs = grid_probs({(0, 0): [0.0, 0.9, 0.1]})
    mask = np.zeros((32, 32), bool)
    mask[1:4, 1:4] = True  # no centre inside; only patch (0, 0) covers it
    np.testing.assert_allclose(roi_patch_probs(probs, (3, 3), mask, 16, 8), [0.0, 0.9, 0.1])


def test_a_perfect_patch_map_is_the_ceiling_the_patch_geometry_allows():
    mask = np.zeros((96, 96), bool)
    mask[36:60, 36:60] = True  # a 24-px lesion under 16-px patches at stride 8
    fine = roi_scores(perfect_patch_map(mask, (11, 11), 16, 8), mask)["iou"]
    coarse = roi_scores(perfect_patch_map(mask, (3, 3), 48, 24), mask)["iou"]
    assert fine > 0.8  # small patches at a fine stride can outline it
    assert coarse < fine  # one 48-px patch cannot


def rows(roi_malignancy: list[float], image_malignancy: list[float], labels: list[int]):
    return [
        {"label": y, "roi_patch_probs": [0.5, 0.5 * (1 - r), 0.5 * r], "probs": [0.2, 0.8 - p, p]}
        for r, p, y in zip(roi_malignancy, image_malignancy, labels, strict=True)
    ]


def test_lesion_classes_are_scored_at_the_roi_and_on_the_pooled_image_separately():
    labels = [1, 1, 1, 2, 2, 2]
    # the lesions' own patches rank malignant above benign; the pooled image ranks them reversed
    scored = rows([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1], labels)
    scored.append({"label": 0, "roi_patch_probs": [1, 0, 0], "probs": [1, 0, 0]})  # ignored
    out = lesion_class_separation(scored, CLASSES, negative=0, n_resamples=50, seed=0)
    assert out["classes"] == ["benign", "malignant"] and out["n_images"] == 6
    assert out["roi_patches"]["roc_auc"] == pytest.approx(1.0)
    assert out["pooled_image"]["roc_auc"] == pytest.approx(0.0)
    low, high = out["roi_patches"]["ci95"]
    assert 0.0 <= low <= high <= 1.0


def test_lesion_class_intervals_draw_the_split_groups_whole():
    """Each patient holds a benign and a malignant lesion: drawn whole, as the run's own
    intervals draw them, every resample holds both classes; drawn film by film (as before),
    some held one class and the interval rested on the others only."""
    labels = [1, 2] * 2
    scored = rows([0.1, 0.7, 0.3, 0.9], [0.5] * 4, labels)
    for i, row in enumerate(scored):
        row["path"] = f"film{i}.png"
    group_of = {f"film{i}.png": f"patient{i // 2}" for i in range(4)}
    by_patient = lesion_class_separation(scored, CLASSES, 0, 100, 0, group_of)
    by_film = lesion_class_separation(scored, CLASSES, 0, 100, 0)
    assert by_patient["roi_patches"]["ci_n_resamples"] == 100
    assert by_film["roi_patches"]["ci_n_resamples"] < 100


def test_with_one_lesion_class_there_is_nothing_to_separate():
    two = rows([0.1, 0.9], [0.1, 0.9], [1, 1])
    assert lesion_class_separation(two, ["normal", "lesion"], 0, 10, 0) is None


def film_probs(scores: list[float]) -> np.ndarray:
    """Class probabilities whose lesion log-odds against "normal" are ``scores``."""
    p_normal = 1.0 / (1.0 + np.exp(np.asarray(scores, float)))
    return np.stack([p_normal, (1 - p_normal) / 2, (1 - p_normal) / 2], axis=1)


def test_comparing_a_film_with_the_other_breast_cancels_what_both_share():
    # four women; each woman's density lifts both her films, the lesion adds 1 to one film
    density = {"w0": 3.0, "w1": 0.0, "w2": 2.0, "w3": -1.0}
    films = [  # (woman, label, lesion)
        ("w0", 0, 0), ("w0", 0, 0), ("w1", 2, 1), ("w1", 0, 0),
        ("w2", 0, 0), ("w2", 0, 0), ("w3", 1, 1), ("w3", 0, 0),
    ]  # fmt: skip
    scores = [density[w] + lesion for w, _, lesion in films]
    labels, women = [y for _, y, _ in films], [w for w, _, _ in films]
    out = lesion_detection(labels, film_probs(scores), women, [0] * 8, 0, 200, 0, groups=women)
    assert out["pooled"]["roc_auc"] < 0.75  # dense normal breasts outscore the lesions
    assert out["within_folds"]["per_fold"] == [pytest.approx(out["pooled"]["roc_auc"])]
    paired = out["bilateral"]
    assert paired["n_women"] == 4
    assert paired["pooled"]["film_alone"]["roc_auc"] == pytest.approx(out["pooled"]["roc_auc"])
    assert paired["pooled"]["minus_other_film"]["roc_auc"] == pytest.approx(1.0)
    assert paired["within_folds"]["minus_other_film"]["mean"] == pytest.approx(1.0)
    low, high = paired["pooled"]["minus_other_film"]["ci95"]
    assert 0.0 <= low <= high <= 1.0


def test_within_folds_the_comparison_is_not_credited_with_cancelling_fold_offsets():
    # two folds whose models score on different scales and no left/right signal in either:
    # in each fold every lesion film scores like its partner
    fold_a = [("a1", 1, 0.5), ("a1", 0, 0.5), ("a2", 0, 0.0), ("a2", 0, 1.0)]
    fold_b = [("b1", 2, 0.5), ("b1", 0, 0.5), ("b2", 1, 0.5), ("b2", 0, 0.5)]
    offset = {0: 0.0, 1: 5.0}  # fold b's model says "lesion" more readily
    films = [(w, y, s + offset[k]) for k, fold in enumerate((fold_a, fold_b)) for w, y, s in fold]
    folds = [0] * 4 + [1] * 4
    out = lesion_detection(
        [y for _, y, _ in films], film_probs([s for *_, s in films]), [w for w, *_ in films],
        folds, 0, 50, 0, groups=[w for w, *_ in films],
    )  # fmt: skip
    within = out["bilateral"]["within_folds"]
    assert within["film_alone"]["per_fold"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert within["minus_other_film"]["mean"] == pytest.approx(0.5)  # nothing to compare
    assert out["within_folds"]["mean"] == pytest.approx(0.5)
    # pooled, the offset alone moves the film's AUC away from 0.5: only within folds is fair
    assert out["pooled"]["roc_auc"] != pytest.approx(0.5)


def test_only_women_with_exactly_two_films_are_compared():
    films = [("a", 1, 2.0), ("a", 0, 0.0), ("b", 0, 0.5), ("c", 0, 0.1), ("c", 2, 1.0), ("c", 0, 0)]
    labels, women = [y for _, y, _ in films], [w for w, *_ in films]
    probs, folds = film_probs([s for *_, s in films]), [0] * 6
    out = lesion_detection(labels, probs, women, folds, 0, 50, 0, groups=women)
    assert out["pooled"]["n_images"] == 6
    assert out["bilateral"]["n_women"] == 1  # "b" has one film, "c" three
    assert out["bilateral"]["pooled"]["film_alone"]["n_images"] == 2
    slides = lesion_detection(labels, probs, women, folds, 0, 50, 0, groups=women, bilateral=False)
    assert slides["bilateral"] is None  # two slides of a patient are not left and right
    alone = lesion_detection(
        [1, 0], film_probs([1.0, 0.0]), ["a", "b"], [0, 0], 0, 50, 0, groups=["a", "b"]
    )
    assert alone["bilateral"] is None and alone["pooled"]["roc_auc"] == pytest.approx(1.0)


def test_the_registered_model_carries_the_two_film_calibration_of_what_it_averages():
    from napari_pathreview.bilateral import fit_bilateral
    from napari_pathreview.training.datasets import Sample
    from napari_pathreview.training.lesion_eval import registered_bilateral

    rng = np.random.default_rng(0)
    samples = [Sample(f"f{i}.png", "x", f"w{i // 2}") for i in range(16)]
    folds = []
    for part in (range(0, 8), range(8, 16)):  # a woman's two films share a fold
        p_normal = rng.uniform(0.05, 0.95, len(part))
        probs = np.stack([p_normal, (1 - p_normal) / 2, (1 - p_normal) / 2], axis=1)
        folds.append(
            {
                "test_predictions": {
                    "probs": probs.tolist(),
                    "labels": [int(i % 2) for i in part],  # the first film of each is normal
                    "paths": [f"f{i}.png" for i in part],
                },
                "bilateral": {"calibration": {"slope": 0.7, "intercept": 0.1, "fitted": True}},
            }
        )
    classes = ["normal", "benign", "malignant"]
    one = registered_bilateral(folds, samples, classes, 0, best=1)
    assert one == {
        "slope": 0.7,
        "intercept": 0.1,
        "fitted": True,
        "n_films": 0,
        "negative_class": "normal",
        "fitted_on": "fold 1's validation films",
    }
    ensemble = registered_bilateral(folds, samples, classes, 0, best=None)
    pooled = fit_bilateral(
        np.concatenate([f["test_predictions"]["probs"] for f in folds]),
        [i % 2 for i in range(16)],
        [s.patient_id for s in samples],
        0,
    )
    assert ensemble["fitted_on"] == "the 2 folds' held-out films"
    assert (ensemble["slope"], ensemble["intercept"]) == (pooled.slope, pooled.intercept)
    assert ensemble["n_films"] == 16 and ensemble["fitted"]


def dicom_training_set(dicom_factory, root: Path, films: list[tuple[str, ...]]) -> dict:
    """DICOM films (woman, laterality, view, class) under ``root`` (dicom_factory's folder)
    read as a lesion run reads its training set: class folders, the woman from each header's
    PatientID. Returns file stem → LesionImage."""
    from napari_pathreview.training import datasets as ds
    from napari_pathreview.training.lesion import prepare_lesion_image

    rng = np.random.default_rng(0)
    for woman, side, view, label in films:
        pixels = rng.integers(200, 3000, (16, 16)).astype(np.uint16)
        name = f"set/{label}/{woman}-{side}{view}.dcm"
        dicom_factory(name, pixels, patient_id=woman, laterality=side, view=view)
    samples = ds.from_folder(root / "set")
    return {
        Path(s.path).stem: prepare_lesion_image(s, CLASSES.index(s.label), 1.0, "mammogram")
        for s in samples
    }


def test_a_four_view_training_set_pairs_left_with_right_in_each_view(dicom_factory, tmp_path):
    """A DICOM four-view exam used to give no pairs (four films of one woman), and two films
    of one breast were paired as her left and right: training now pairs as inference does."""
    from napari_pathreview.bilateral import BilateralCalibration, bilateral_probs
    from napari_pathreview.training.lesion_eval import bilateral_fold

    four_view = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    films = [("A", s, v, "benign" if (s, v) == ("L", "CC") else "normal") for s, v in four_view]
    films += [("B", s, v, "normal") for s, v in four_view]
    films += [("C", "L", "CC", "malignant"), ("C", "L", "MLO", "normal")]  # one breast
    images = dicom_training_set(dicom_factory, tmp_path, films)
    names = list(images)
    val = [names.index(f"A-{s}{v}") for s, v in four_view]
    test = [names.index(f"B-{s}{v}") for s, v in four_view]
    test += [names.index("C-LCC"), names.index("C-LMLO")]
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], len(names))
    out = bilateral_fold(
        list(images.values()), {"val": val, "test": test}, 0, probs[val], probs[test]
    )["bilateral"]
    assert out["calibration"]["n_films"] == 4 and out["calibration"]["fitted"]
    calibration = BilateralCalibration(**out["calibration"])
    decided = np.asarray(out["probs"])
    for pair in ([0, 1], [2, 3]):  # B's L-CC with R-CC, L-MLO with R-MLO
        expected = bilateral_probs(probs[test][pair], ["B", "B"], 0, calibration)
        np.testing.assert_allclose(decided[pair], expected)
    np.testing.assert_allclose(decided[4:], probs[test][4:])  # C's films stand alone


def test_the_diagnostics_compare_left_with_right_in_each_view_as_the_decision_does():
    from napari_pathreview.io.patients import FilmSide

    sides = [FilmSide(s, v) for s, v in (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))]
    sides += [FilmSide("L", "CC"), FilmSide("L", "MLO")]  # woman b: two films of one breast
    women, labels = ["a"] * 4 + ["b"] * 2, [1, 0, 1, 0, 1, 0]
    probs = film_probs([2.0, 0.0, 1.5, 0.5, 1.0, 0.0])
    out = lesion_detection(labels, probs, women, [0] * 6, 0, 50, 0, groups=women, sides=sides)
    assert out["bilateral"]["n_women"] == 1  # her two pairs; b's films stand alone
    assert out["bilateral"]["pooled"]["film_alone"]["n_images"] == 4
    assert out["bilateral"]["pooled"]["minus_other_film"]["roc_auc"] == pytest.approx(1.0)
