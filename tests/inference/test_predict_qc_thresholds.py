"""Prediction flags images by the QC thresholds the model was trained under (``ModelCard.qc``)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from napari_pathreview.cli import main
from napari_pathreview.models import create_model
from napari_pathreview.registry import ModelRegistry

#: Laplacian variance 66.8 as stored: blurry under seed 001's 75, sharp enough under 40
BLUR_67 = "SOB_B_A-14-22549CD-40-019.png"


@pytest.fixture
def blur_67(shared_data: Path) -> Path:
    return shared_data / "breakhis" / BLUR_67


def _register(card: dict) -> str:
    torch.manual_seed(0)
    version = ModelRegistry().register(create_model("resnet18", 2).eval(), card)
    return f"{card['name']}@{version}"


def _predicted_qc(image: Path, ref: str, out: Path) -> tuple[str, str]:
    argv = ["predict", str(image), "--model", ref, "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    with (out / "predictions.csv").open(newline="") as handle:
        (row,) = csv.DictReader(handle)
    return row["qc_passed"], row["qc_reasons"]


def test_predict_passes_an_image_the_card_s_blur_threshold_calls_sharp(
    binary_card, blur_67, tmp_path
) -> None:
    ref = _register({**binary_card, "qc": {"blur_threshold": 40}})
    assert _predicted_qc(blur_67, ref, tmp_path / "out") == ("True", "")


def test_predict_with_a_card_without_qc_thresholds_flags_by_the_defaults(
    binary_card, blur_67, tmp_path
) -> None:
    ref = _register(binary_card)
    passed, reasons = _predicted_qc(blur_67, ref, tmp_path / "out")
    assert (passed, reasons) == ("False", "blurry (laplacian variance 66.8 < 75)")


def test_the_analyze_dock_judges_by_the_card_s_thresholds(binary_card, blur_67) -> None:
    from napari_pathreview.inference.analysis import AnalysisRequest, analyse
    from napari_pathreview.io import load_image

    ref = _register({**binary_card, "qc": {"blur_threshold": 40}})
    request = AnalysisRequest(ref, device="cpu", cam_method=None)
    result = list(analyse(request, load_image(blur_67).data, modality="histology"))[-1]
    assert result.prediction.qc.passed and result.prediction.qc.blur_score < 75
