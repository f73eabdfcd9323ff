"""``pathreview predict`` and a stack of frames: refused by name unless ``--frame`` picks one."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_pathreview.cli import main

MAMMOGRAM_CARD = {
    "name": "tinymg",
    "architecture": "resnet18",
    "task": "binary",
    "classes": ["benign", "malignant"],
    "modality": "mammogram",
    "input_size": [3, 64, 64],
    "threshold": 0.5,
}


@pytest.fixture
def mammogram_ref(registry) -> str:
    import torch

    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    return f"tinymg@{registry.register(create_model('resnet18', 2).eval(), MAMMOGRAM_CARD)}"


@pytest.fixture
def stack(dicom_factory):
    rng = np.random.default_rng(0)
    return dicom_factory("dbt.dcm", rng.integers(0, 4096, (4, 72, 64)).astype(np.uint16))


def _rows(out):
    with open(out / "predictions.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_predict_refuses_a_stack_naming_it_and_how_to_choose_a_frame(
    stack, mammogram_ref, tmp_path, capsys
):
    assert main(["predict", str(stack), "--model", mammogram_ref, "--out", str(tmp_path)]) == 1
    [row] = _rows(tmp_path)
    assert row["status"] == "error" and row["predicted_label"] == ""
    assert str(stack) in row["error"] and "4 frames" in row["error"]
    assert "--frame K" in row["error"]


def test_predict_classifies_the_frame_it_is_told_and_says_which(
    stack, dicom_factory, mammogram_ref, tmp_path
):
    film = dicom_factory("film.dcm", np.full((72, 64), 900, np.uint16))
    argv = ["predict", str(stack), str(film), "--model", mammogram_ref, "--frame", "2"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    stacked, single = _rows(tmp_path)
    assert stacked["status"] == "ok" and stacked["frame"] == "2"
    assert single["status"] == "ok" and single["frame"] == ""


def test_predict_reads_the_chosen_frame_not_the_first(stack, mammogram_ref, tmp_path):
    from napari_pathreview.inference import Predictor
    from napari_pathreview.io import load_image
    from napari_pathreview.registry import ModelRegistry

    model = ModelRegistry().load(*mammogram_ref.split("@"))
    card = ModelRegistry().card(*mammogram_ref.split("@"))
    expected = Predictor(model, card).predict([load_image(stack, frame=3)])[0]
    argv = ["predict", str(stack), "--model", mammogram_ref, "--frame", "3", "--no-qc"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    [row] = _rows(tmp_path)
    assert float(row["p_malignant"]) == pytest.approx(expected.probabilities["malignant"], 1e-4)


def test_a_frame_beyond_the_stack_is_named_in_its_row(stack, mammogram_ref, tmp_path):
    argv = ["predict", str(stack), "--model", mammogram_ref, "--frame", "9"]
    assert main([*argv, "--out", str(tmp_path)]) == 1
    [row] = _rows(tmp_path)
    assert "frame 9 is not one of its 4 frames" in row["error"]
