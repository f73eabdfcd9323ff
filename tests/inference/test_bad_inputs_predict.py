"""Bad input to ``predict``, ``explain`` and ``evaluate-cam``: clear errors, batches go on.

The console script runs in a subprocess, so each case checks what a user sees: the exit
status, the offending file/option named on stderr, and no traceback. Inputs are made here.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from napari_pathreview.errors import NonFiniteOutputError

CLI = [sys.executable, "-m", "napari_pathreview.cli"]


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)


def _no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def _png(path: Path, pixels: np.ndarray) -> Path:
    cv2.imwrite(str(path), pixels[:, :, ::-1] if pixels.ndim == 3 else pixels)
    return path


@pytest.fixture
def rgb(tmp_path, rng, tissue_like) -> Path:
    return _png(tmp_path / "tissue.png", tissue_like(rng, 64, 64))


@pytest.fixture
def grey(tmp_path, rng) -> Path:
    return _png(tmp_path / "mammo.png", rng.integers(0, 200, (64, 64), dtype=np.uint8))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


SIMPLE_CASES = [
    (["predict", "{tmp}/missing.png", "--model", "{model}"], "missing.png"),
    (["predict", "{rgb}", "--model", "nosuchmodel"], "nosuchmodel"),
    (["predict", "{rgb}", "--model", "bad/name"], "bad/name"),
    (["predict", "{rgb}", "--model", "{model}", "--out", "{afile}"], "is a file"),
    (["predict", "{rgb}", "--model", "{model}", "--stain-target", "{rgb}"], "tissue.png"),
    (["predict", "{grey}", "--model", "{model}"], "--allow-modality-mismatch"),
    (["explain", "{tmp}/missing.png", "--model", "{model}", "--roi", "{tmp}/r.geojson"],
     "missing.png"),
    (["explain", "{rgb}", "--model", "{model}", "--roi", "{tmp}/none.geojson"], "none.geojson"),
    (["explain", "{rgb}", "--model", "{model}", "--roi", "{outside}"], "outside.geojson"),
    (["explain", "{rgb}", "--model", "{model}", "--roi", "{outside}", "--threshold", "2"],
     "--threshold"),
    (["evaluate-cam", "--mias", "{tmp}", "--model", "{model}", "--limit", "-1"], "--limit"),
    (["evaluate-cam", "--mias", "{tmp}/nope", "--model", "{model}"], "nope"),
    (["predict", "{rgb}", "--model", "{model}", "--batch-size", "0"], "--batch-size"),
    # CAM options: refused once, not by the CAM of every image of the batch in turn
    (["predict", "{rgb}", "--model", "{model}", "--cam", "gradcam", "--target-class", "nosuch"],
     "unknown class 'nosuch'"),
    (["predict", "{rgb}", "--model", "{model}", "--cam", "scorecam", "--scorecam-top-k", "0"],
     "top_k must be >= 1"),
]  # fmt: skip


@pytest.fixture
def places(tmp_path, rgb, grey, binary_ref) -> dict[str, str]:
    afile = tmp_path / "afile"
    afile.write_text("x")
    outside = tmp_path / "outside.geojson"
    ring = [[500, 500], [600, 500], [600, 600], [500, 600], [500, 500]]
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip
    outside.write_text(json.dumps(feature))
    (tmp_path / "Info.txt").write_text("mdb001 G CIRC B 10 10 5\n")
    return {"tmp": str(tmp_path), "rgb": str(rgb), "grey": str(grey), "model": binary_ref,
            "afile": str(afile), "outside": str(outside)}  # fmt: skip


@pytest.mark.parametrize(("argv", "named"), SIMPLE_CASES, ids=lambda v: " ".join(v)[:60])
def test_bad_invocation_is_refused_naming_the_culprit(places, argv, named) -> None:
    result = _run(*[a.format(**places) for a in argv], "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    _no_traceback(result)


def test_missing_file_and_unknown_model_are_reported_before_torch_loads(tmp_path) -> None:
    code = (
        "import sys\n"
        "from napari_pathreview.cli import main\n"
        f"rc = main(['predict', {str(tmp_path / 'x.png')!r}, '--model', 'nosuch'])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["2", "False"], result.stderr


def test_modality_mismatch_can_be_overridden(places, grey, tmp_path) -> None:
    out = tmp_path / "out"
    result = _run("predict", grey, "--model", places["model"], "--device", "cpu",
                  "--allow-modality-mismatch", "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _rows(out / "predictions.csv")[0]["status"] == "ok"


def test_batch_predict_records_each_failure_and_goes_on(places, rgb, tmp_path) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    missing = tmp_path / "gone.png"
    second = _png(tmp_path / "second.png", cv2.imread(str(rgb)))
    out = tmp_path / "out"
    result = _run("predict", rgb, corrupt, missing, second, "--model", places["model"],
                  "--device", "cpu", "--out", out)  # fmt: skip
    assert result.returncode == 1
    assert "2 of 4 image(s) failed" in result.stderr
    _no_traceback(result)
    rows = _rows(out / "predictions.csv")
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok"]
    assert "corrupt.png" in rows[1]["error"] and "gone.png" in rows[2]["error"]
    assert rows[0]["predicted_label"] and rows[3]["predicted_label"]
    assert rows[1]["predicted_label"] == ""


@pytest.fixture
def nan_ref(registry, binary_card) -> str:
    from napari_pathreview.models import create_model

    model = create_model("resnet18", 2).eval()
    with torch.no_grad():
        model.get_classifier().weight.fill_(float("nan"))
    version = registry.register(model, {**binary_card, "name": "broken"})
    return f"broken@{version}"


def test_nan_probability_is_an_error_not_a_label(nan_ref, rgb) -> None:
    from napari_pathreview.inference.predictor import Predictor

    predictor = Predictor.from_registry(nan_ref, device="cpu")
    with pytest.raises(NonFiniteOutputError, match="non-finite"):
        predictor.predict([rgb])


def test_nan_model_in_the_cli_is_a_failed_row(nan_ref, rgb, tmp_path) -> None:
    out = tmp_path / "out"
    result = _run("predict", rgb, "--model", nan_ref, "--device", "cpu", "--out", out)
    assert result.returncode == 1
    _no_traceback(result)
    row = _rows(out / "predictions.csv")[0]
    assert row["status"] == "error" and "non-finite" in row["error"]


@pytest.fixture
def wide_ref(registry) -> str:
    """``wide@1``: a random binary resnet18 taking 64×96 (non-square) inputs."""
    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    card = {"name": "wide", "architecture": "resnet18", "task": "binary",
            "classes": ["benign", "malignant"], "modality": "histology",
            "input_size": [3, 64, 96], "stain_method": "none", "threshold": 0.5}  # fmt: skip
    return f"wide@{registry.register(create_model('resnet18', 2).eval(), card)}"


def test_d4_on_a_non_square_model_is_refused_before_any_image(wide_ref, rgb, tmp_path) -> None:
    out = tmp_path / "out"
    result = _run("predict", rgb, "--model", wide_ref, "--tta", "d4", "--out", out)
    assert result.returncode == 2
    _no_traceback(result)
    assert "'d4'" in result.stderr and "(64, 96)" in result.stderr and "'flips'" in result.stderr
    assert not (out / "predictions.csv").exists()
    flips = _run("predict", rgb, "--model", wide_ref, "--tta", "flips", "--out", out)
    assert flips.returncode == 0, flips.stderr


def test_a_one_pixel_image_is_a_failed_row_and_a_small_one_a_qc_warning(
    places, rgb, tmp_path, tissue_like, rng
) -> None:
    """The size rule (``preprocessing.size_warning``) as `pathreview predict` applies it."""
    dot = _png(tmp_path / "dot.png", np.full((1, 1, 3), (200, 120, 180), np.uint8))
    small = _png(tmp_path / "small.png", tissue_like(rng, 12, 12))  # 64² model: 5× enlarged
    out = tmp_path / "out"
    result = _run("predict", dot, small, rgb, "--model", places["model"], "--device", "cpu",
                  "--out", out)  # fmt: skip
    assert result.returncode == 1
    _no_traceback(result)
    rows = _rows(out / "predictions.csv")
    assert [r["status"] for r in rows] == ["error", "ok", "ok"]
    assert "dot.png is 1×1 px: too small to classify" in rows[0]["error"]
    assert "heavily upsampled (12×12 px enlarged 5×" in rows[1]["qc_reasons"]
    assert "upsampled" not in rows[2]["qc_reasons"]  # 64×64 on a 64×64 model
