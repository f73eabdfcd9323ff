"""``pathreview predict-slides`` refuses a wrong model or stain once, before any slide is read.

Without these checks a cohort either failed slide by slide (a bad ``--stain``) or, for a model
of the other modality, "finished" every slide with no tile and NaN probabilities, exit status 0.
The console script runs in a subprocess, as a user runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from slide_fixtures import register_tiny, tissue_slide, write_slide

PATHREVIEW = str(Path(sys.executable).with_name("pathreview"))


def _predict_slides(slide: Path, model: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [PATHREVIEW, "predict-slides", str(slide), "--model", model, "--out", str(out)]
    argv += ["--workers", "0", "--device", "cpu", "--no-progress", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


@pytest.fixture
def slide_path(tmp_path: Path) -> Path:
    return write_slide(tmp_path / "slide.tif", tissue_slide(384, 512))


@pytest.fixture
def mammogram_ref(registry) -> str:
    """A mammogram model that states a resolution (so only its modality is wrong for a slide)."""
    import torch

    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    card = {
        "name": "tinymammo",
        "task": "mammogram",
        "classes": ["normal", "benign", "malignant"],
        "modality": "mammogram",
        "input_size": [3, 64, 64],
        "preprocess": {"input_size": [3, 64, 64], "pixel_size": 0.5, "pixel_unit": "um"},
    }
    return f"tinymammo@{registry.register(create_model('resnet18', 3).eval(), card)}"


def test_a_model_of_the_other_modality_is_refused_before_any_slide(
    mammogram_ref: str, slide_path: Path, tmp_path: Path
) -> None:
    done = _predict_slides(slide_path, mammogram_ref, tmp_path / "out")
    assert done.returncode == 2, done.stdout
    assert "trained on mammogram images" in done.stderr and "slide.tif" in done.stderr
    assert "--allow-modality-mismatch" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "slides.csv").exists()


def test_the_modality_check_can_be_overridden(
    mammogram_ref: str, slide_path: Path, tmp_path: Path
) -> None:
    done = _predict_slides(slide_path, mammogram_ref, tmp_path / "out", "--allow-modality-mismatch")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "slides.csv").exists()


def test_an_unknown_stain_method_is_refused_by_the_parser(
    registry, slide_path: Path, tmp_path: Path
) -> None:
    done = _predict_slides(slide_path, register_tiny(registry), tmp_path / "out", "--stain", "foo")
    assert done.returncode == 2 and "invalid choice: 'foo'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_stain_method_without_a_fitted_target_is_refused_before_any_slide(
    registry, slide_path: Path, tmp_path: Path
) -> None:
    model = register_tiny(registry)
    done = _predict_slides(slide_path, model, tmp_path / "out", "--stain", "macenko")
    assert done.returncode == 2 and "'macenko' needs a fitted target" in done.stderr
    assert "pathreview stain fit --method macenko" in done.stderr
    assert "--stain-target FILE.json" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "failures.csv").exists()


# (flag, bad value): the message must name the flag as typed, not the SlideSettings field
BAD_TILING_FLAGS = [
    ("--mpp", "-1"),
    ("--slide-um-per-px", "0"),
    ("--model-um-per-px", "nan"),
    ("--batch-size", "0"),
    ("--read-workers", "0"),
    ("--overlap", "0.95"),
    ("--min-tissue", "1.5"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_TILING_FLAGS, ids=[f for f, _ in BAD_TILING_FLAGS])
def test_a_bad_tiling_option_is_refused_naming_the_flag_typed(
    registry, slide_path: Path, tmp_path: Path, flag: str, value: str
) -> None:
    out = tmp_path / "out"
    done = _predict_slides(slide_path, register_tiny(registry), out, flag, value)
    assert done.returncode == 2, done.stdout
    assert f"error: {flag} must be" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_the_help_states_each_tiling_default(capsys) -> None:
    from napari_pathreview.cli import main

    with pytest.raises(SystemExit):
        main(["predict-slides", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "least tissue fraction of a tile (default: 0.25)" in text
    assert "tile overlap in [0, 0.9] (default: 0.0)" in text
    assert "tile reader threads (default: 4)" in text
    assert "tiles per forward (default: 8 on CPU, 32 on GPU)" in text


def test_an_out_that_is_a_file_is_refused_before_any_slide(
    registry, slide_path: Path, tmp_path: Path
) -> None:
    """`--out results.csv` (an existing file) used to end, after the model check, in the bare
    'results.csv: File exists' of a failed mkdir."""
    blocker = tmp_path / "results.csv"
    blocker.write_text("kept\n")
    done = _predict_slides(slide_path, register_tiny(registry), blocker)
    assert done.returncode == 2, done.stdout
    assert f"--out {blocker} is a file, not a folder" in done.stderr
    assert "Traceback" not in done.stderr and blocker.read_text() == "kept\n"
