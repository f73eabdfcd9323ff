"""A film read against the same woman's other film, with the calibration its model card carries."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathreview.bilateral import BilateralCalibration, bilateral_probs, card_entry
from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.two_film import (
    decide_films,
    decide_pair,
    patients_of,
    read_patients_csv,
    why_alone,
)
from napari_pathreview.io.patients import FilmSide, film_side
from napari_pathreview.registry import ModelCard

CLASSES = ("normal", "benign", "malignant")
CALIBRATION = BilateralCalibration(slope=1.5, intercept=-0.2, fitted=True, n_films=30)


def card(bilateral: dict | None = None) -> ModelCard:
    return ModelCard.from_dict(
        {
            "name": "mias-lesion",
            "architecture": "patch_mil",
            "task": "mammogram",
            "classes": list(CLASSES),
            "modality": "mammogram",
            "bilateral": bilateral,
        }
    )


TWO_FILM = card(card_entry(CALIBRATION, "normal", "fold 0's validation films"))


def film(p_normal: float, benign_share: float = 0.5) -> dict[str, float]:
    lesion = 1.0 - p_normal
    return {
        "normal": p_normal,
        "benign": lesion * benign_share,
        "malignant": lesion * (1 - benign_share),
    }


def test_a_pair_gets_the_decision_its_training_run_computed():
    films = [film(0.3, 0.8), film(0.6), film(0.2), film(0.9)]
    women = ["1", "1", "2", "2"]
    decisions = decide_films(TWO_FILM, films, women, ["a", "b", "c", "d"])
    expected = bilateral_probs(
        np.asarray([[f[c] for c in CLASSES] for f in films]), women, 0, CALIBRATION
    )
    for decision, row in zip(decisions, expected, strict=True):
        assert [decision.probabilities[c] for c in CLASSES] == pytest.approx(row)
        assert decision.label == CLASSES[int(np.argmax(row))]
    assert [d.other for d in decisions] == ["b", "a", "d", "c"]


def test_the_film_that_differs_from_her_other_film_is_the_abnormal_one():
    dense_left, dense_right = film(0.25), film(0.3)  # both look lesion-like: her density
    assert max(dense_left, key=dense_left.get) != "normal"  # alone, it is called abnormal
    lesion, clear = film(0.3, benign_share=0.2), film(0.95)
    both_dense = decide_pair(TWO_FILM, dense_left, dense_right, "R")
    with_lesion = decide_pair(TWO_FILM, lesion, clear, "R")
    assert both_dense.label == "normal"
    assert with_lesion.label == "malignant"  # lesion classes keep the film's own proportions
    assert with_lesion.probabilities["benign"] / with_lesion.probabilities["malignant"] == (
        pytest.approx(0.2 / 0.8)
    )


def test_films_without_exactly_one_other_film_of_hers_stand_alone():
    films = [film(0.3), film(0.5), film(0.4), None, film(0.2), film(0.2), film(0.2), film(0.6)]
    women = ["1", "2", "3", "3", "4", "4", "4", None]  # 3's other film failed; 4 has three
    decisions = decide_films(TWO_FILM, films, women, [str(i) for i in range(8)])
    assert decisions == [None] * 8


def test_a_four_view_exam_pairs_left_with_right_in_each_view():
    views = [("L", "CC"), ("L", "MLO"), ("R", "MLO"), ("R", "CC")]
    sides = [FilmSide(*v) for v in views]
    films = [film(0.3), film(0.5), film(0.6), film(0.9)]
    names = ["LCC", "LMLO", "RMLO", "RCC"]
    decisions = decide_films(TWO_FILM, films, ["A"] * 4, names, sides)
    assert [d.other for d in decisions] == ["RCC", "RMLO", "LMLO", "LCC"]
    assert decisions[0] == decide_pair(TWO_FILM, films[0], films[3], "RCC")


def test_two_films_of_one_breast_are_not_read_as_her_left_and_right():
    sides = [FilmSide("L", "CC"), FilmSide("L", "MLO")]
    films = [film(0.3), film(0.9)]
    assert decide_films(TWO_FILM, films, ["B", "B"], ["LCC", "LMLO"], sides) == [None, None]
    assert why_alone(films, ["B", "B"], sides) == {
        0: "both films of patient B show the L breast",
        1: "both films of patient B show the L breast",
    }


def test_each_film_read_alone_is_told_why():
    films = [film(0.3), None, film(0.2), film(0.2), film(0.2), film(0.4), film(0.6)]
    women = ["1", "1", "4", "4", "4", None, "5"]
    sides = [FilmSide()] * 5 + [FilmSide(), FilmSide("R", "CC")]
    assert why_alone(films, women, sides) == {
        0: "no other film of patient 1",
        1: "its prediction failed",
        2: "3 films of patient 4: which two are her left and right is not said",
        3: "3 films of patient 4: which two are her left and right is not said",
        4: "3 films of patient 4: which two are her left and right is not said",
        5: "the file names no patient (give --patients)",
        6: "no other film of patient 5",
    }


def test_an_image_given_twice_is_read_alone_and_told_why():
    films = [film(0.3), film(0.3)]
    paths = ["mdb001.pgm", "./mdb001.pgm"]
    assert decide_films(TWO_FILM, films, ["1", "1"], paths, films=paths) == [None, None]
    assert why_alone(films, ["1", "1"], [FilmSide()] * 2, paths) == {
        0: "no other film of patient 1 (its 2 rows are one image)",
        1: "no other film of patient 1 (its 2 rows are one image)",
    }


def test_a_dicom_film_says_which_breast_and_view(dicom_factory, tmp_path):
    path = dicom_factory("film.dcm", np.zeros((8, 8), np.uint16), laterality="L", view="MLO")
    assert film_side(path) == FilmSide("L", "MLO")
    assert film_side(tmp_path / "mdb001.pgm") == FilmSide()


def test_predict_pairs_a_womans_dicom_films_by_breast_and_view(
    registry, dicom_factory, tmp_path, capsys
):
    from napari_pathreview.cli import main
    from napari_pathreview.models import create_model

    fields = {**TWO_FILM.to_dict(), "architecture": "resnet18", "input_size": [3, 64, 64]}
    registry.register(create_model("resnet18", 3), fields)
    rng = np.random.default_rng(0)
    films = [
        dicom_factory(
            f"{woman}_{side}{view}.dcm",
            rng.integers(0, 4096, (96, 80)),
            laterality=side,
            view=view,
            patient_id=woman,
        )
        for woman, side, view in [
            ("A", "L", "CC"),
            ("A", "R", "CC"),
            ("A", "L", "MLO"),
            ("A", "R", "MLO"),
            ("B", "L", "CC"),
            ("B", "L", "MLO"),
        ]
    ]
    argv = ["predict", *map(str, films), "--model", "mias-lesion", "--two-film"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    read_with = {
        line.split("\t")[0]: line.split("\tvs ")[1]
        for line in printed.splitlines()
        if "\ttwo-film\t" in line and "\tvs " in line
    }
    assert read_with == {str(films[a]): str(films[b]) for a, b in [(0, 1), (1, 0), (2, 3), (3, 2)]}
    for alone in films[4:]:
        assert f"{alone}\ttwo-film\tread alone: both films of patient B show the L breast" in (
            printed
        )


def test_a_model_without_a_two_film_calibration_is_refused_by_name():
    with pytest.raises(InvalidInputError, match="mias-lesion has no two-film calibration"):
        decide_pair(card(), film(0.3), film(0.6), "R")


def test_patients_come_from_the_csv_with_paths_relative_to_it(tmp_path):
    (tmp_path / "films").mkdir()
    (tmp_path / "films" / "patients.csv").write_text("path,patient_id\nL.png,W7\nR.png, W7 \n")
    listed = read_patients_csv(tmp_path / "films" / "patients.csv")
    images = [tmp_path / "films" / "R.png", tmp_path / "films" / "L.png"]
    assert patients_of(images, listed) == ["W7", "W7"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("file,patient\nL.png,W7\n", "needs the columns path,patient_id"),
        ("path,patient_id\n", "needs the columns|lists no patient_id"),
        ("path,patient_id\nL.png,\n", "line 2: empty path or patient_id"),
        (
            "path,patient_id\nL.png,W7\nR.png,W7\n./L.png,W8\n",
            r"patients.csv:4: .*L.png is listed at line 2 under patient_id 'W7' and here under "
            "'W8'",
        ),
    ],
)
def test_a_bad_patients_csv_is_refused_naming_it(tmp_path, text, named):
    path = tmp_path / "patients.csv"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=named):
        patients_of([tmp_path / "L.png"], read_patients_csv(path))


def test_an_image_the_csv_omits_is_named_rather_than_guessed(tmp_path):
    path = tmp_path / "patients.csv"
    path.write_text("path,patient_id\nL.png,W7\n")
    with pytest.raises(InvalidInputError, match="no patient_id for .*mdb002.pgm"):
        patients_of([tmp_path / "L.png", tmp_path / "mdb002.pgm"], read_patients_csv(path))


def test_without_a_csv_the_file_names_say_whose_film_it_is(tmp_path):
    names = ["mdb001.pgm", "mdb002.pgm", "mdb003.pgm", "scan.png"]
    assert patients_of([tmp_path / n for n in names], None) == ["1", "1", "2", None]


def test_predict_names_the_patients_csv_and_its_folder_when_it_omits_a_film(
    registry, shared_data, tmp_path, capsys
):
    import torch

    from napari_pathreview.cli import main
    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    fields = {**TWO_FILM.to_dict(), "architecture": "resnet18", "input_size": [3, 64, 64]}
    registry.register(create_model("resnet18", 3), fields)
    films = [shared_data / "mias" / "mdb005.pgm", shared_data / "mias" / "mdb007.pgm"]
    patients = tmp_path / "patients.csv"  # names relative to the films' folder, not its own
    patients.write_text("path,patient_id\nmdb005.pgm,W3\nmdb007.pgm,W3\n")
    argv = ["predict", *map(str, films), "--model", "mias-lesion", "--two-film"]
    assert main([*argv, "--patients", str(patients), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"patients CSV {patients} lists no patient_id for" in error
    assert f"relative to its own folder, {tmp_path.resolve()}" in error
