"""``pathreview predict`` and a stack of frames: refused by name unless ``--frame`` picks one;
a ``--frame`` the stack lacks is refused from its header before the model loads; a colour stack
gives an RGB frame."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from colour_stacks import write_pyramidal_colour_stack
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


def _console_script() -> str:
    """The installed ``pathreview`` console script (beside this Python)."""
    script = Path(sys.executable).with_name("pathreview")
    return str(script) if script.exists() else shutil.which("pathreview") or "pathreview"


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


def test_a_frame_beyond_the_stack_is_named_in_its_row(
    stack, dicom_factory, mammogram_ref, tmp_path
):
    film = dicom_factory("film.dcm", np.full((72, 64), 900, np.uint16))
    argv = ["predict", str(stack), str(film), "--model", mammogram_ref, "--frame", "9"]
    assert main([*argv, "--out", str(tmp_path)]) == 1
    stacked, single = _rows(tmp_path)
    assert "frame 9 is not one of its 4 frames (0 to 3)" in stacked["error"]
    assert single["status"] == "ok"  # a single film is read as it is


def test_a_frame_the_only_stack_lacks_is_refused_before_the_model_loads(
    stack, mammogram_ref, tmp_path
):
    out = tmp_path / "out"  # made only once the model has loaded
    argv = ["predict", stack, "--model", mammogram_ref, "--frame", 4, "--out", out]
    result = subprocess.run([_console_script(), *map(str, argv)], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{stack}: frame 4 is not one of its 4 frames (0 to 3)" in result.stderr
    assert not out.exists()


def test_predict_frame_1_of_an_rgb_stack_classifies_that_rgb_frame(
    tmp_path, binary_ref, rng, tissue_like
):
    from napari_pathreview.inference import Predictor
    from napari_pathreview.io import load_image
    from napari_pathreview.registry import ModelRegistry

    frames = np.stack([tissue_like(rng, 64, 64) for _ in range(3)])
    path = tmp_path / "he.tif"
    tifffile.imwrite(path, frames)
    chosen = load_image(path, frame=1)
    assert chosen.data.shape == (64, 64, 3) and np.array_equal(chosen.data, frames[1])
    registry = ModelRegistry()
    model, card = registry.load(*binary_ref.split("@")), registry.card(*binary_ref.split("@"))
    expected = Predictor(model, card).predict([chosen])[0]
    out = tmp_path / "out"
    argv = ["predict", path, "--model", binary_ref, "--frame", 1, "--no-qc", "--out", out]
    result = subprocess.run([_console_script(), *map(str, argv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [row] = _rows(out)
    assert row["status"] == "ok" and row["frame"] == "1"
    assert float(row["p_malignant"]) == pytest.approx(expected.probabilities["malignant"], 1e-4)


def test_predict_frame_2_of_a_large_colour_stack_classifies_that_frame(
    tmp_path, binary_ref, rng, tissue_like, monkeypatch
):
    from napari_pathreview.inference import Predictor
    from napari_pathreview.io import load_image, slides
    from napari_pathreview.registry import ModelRegistry

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)  # the stack is read lazily
    path = tmp_path / "he.tif"
    tifffile.imwrite(path, np.stack([tissue_like(rng, 64, 64) for _ in range(3)]))
    registry = ModelRegistry()
    model, card = registry.load(*binary_ref.split("@")), registry.card(*binary_ref.split("@"))
    chosen, first = load_image(path, frame=2), load_image(path, frame=0)
    assert chosen.metadata["lazy"] is True
    expected, other = Predictor(model, card).predict([chosen, first])
    out = tmp_path / "out"
    argv = ["predict", str(path), "--model", binary_ref, "--frame", "2", "--no-qc"]
    assert main([*argv, "--out", str(out)]) == 0
    [row] = _rows(out)
    assert row["status"] == "ok" and row["frame"] == "2"
    p_malignant = float(row["p_malignant"])
    assert p_malignant == pytest.approx(expected.probabilities["malignant"], 1e-4)
    assert p_malignant != pytest.approx(other.probabilities["malignant"], 1e-4)


def test_predict_frame_1_of_a_pyramidal_colour_stack_matches_that_frame_saved_alone(
    tmp_path, binary_ref, rng, tissue_like
):
    frames = np.stack([tissue_like(rng, 96, 96) for _ in range(3)])
    stack = write_pyramidal_colour_stack(tmp_path / "pyramid.tif", frames)
    alone = [
        write_pyramidal_colour_stack(tmp_path / f"frame{k}.tif", frames[k : k + 1]) for k in (1, 0)
    ]
    out = tmp_path / "out"
    argv = ["predict", stack, *alone, "--model", binary_ref, "--frame", 1, "--no-qc"]
    argv += ["--model-um-per-px", 0.5, "--no-tissue", "--out", out]  # tiled, every tile
    result = subprocess.run([_console_script(), *map(str, argv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    stacked, frame1, frame0 = _rows(out)
    assert stacked["status"] == "ok" and stacked["frame"] == "1"
    assert float(stacked["p_malignant"]) == pytest.approx(float(frame1["p_malignant"]), 1e-4)
    assert float(stacked["p_malignant"]) != pytest.approx(float(frame0["p_malignant"]), 1e-4)


def test_a_frame_a_pyramidal_colour_stack_lacks_is_refused_before_the_model_loads(
    tmp_path, binary_ref, rng, tissue_like
):
    frames = np.stack([tissue_like(rng, 96, 96) for _ in range(3)])
    path = write_pyramidal_colour_stack(tmp_path / "pyramid.tif", frames)
    out = tmp_path / "out"  # made only once the model has loaded
    argv = ["predict", path, "--model", binary_ref, "--frame", 3, "--out", out]
    result = subprocess.run([_console_script(), *map(str, argv)], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{path}: frame 3 is not one of its 3 frames (0 to 2)" in result.stderr
    assert not out.exists()


def test_predict_frame_1_of_a_large_colour_dicom_classifies_that_frame(
    tmp_path, colour_dicom_factory, binary_ref, rng, tissue_like, monkeypatch
):
    from napari_pathreview.inference import Predictor
    from napari_pathreview.io import load_image, slides
    from napari_pathreview.registry import ModelRegistry

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)  # the stack is read lazily
    path = colour_dicom_factory(
        "photos.dcm", np.stack([tissue_like(rng, 64, 64) for _ in range(3)])
    )
    registry = ModelRegistry()
    model, card = registry.load(*binary_ref.split("@")), registry.card(*binary_ref.split("@"))
    chosen, first = load_image(path, frame=1), load_image(path, frame=0)
    assert chosen.metadata["lazy"] is True
    expected, other = Predictor(model, card).predict([chosen, first])
    out = tmp_path / "out"
    argv = ["predict", str(path), "--model", binary_ref, "--frame", "1", "--no-qc"]
    assert main([*argv, "--out", str(out)]) == 0
    [row] = _rows(out)
    assert row["status"] == "ok" and row["frame"] == "1"
    p_malignant = float(row["p_malignant"])
    assert p_malignant == pytest.approx(expected.probabilities["malignant"], 1e-4)
    assert p_malignant != pytest.approx(other.probabilities["malignant"], 1e-4)
