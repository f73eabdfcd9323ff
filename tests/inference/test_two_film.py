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
)
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
