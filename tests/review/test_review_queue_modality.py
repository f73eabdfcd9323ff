"""``pathreview review queue`` refuses a model of the other modality, as ``predict`` does.

A histology model used to order a folder of mammograms by its "uncertainty" (exit 0): the
queue a reviewer then worked through was ordered by noise. The console script runs here.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PATHREVIEW = str(Path(sys.executable).with_name("pathreview"))


@pytest.fixture
def histology_model() -> str:
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    card = {
        "name": "tinyhisto",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 32, 32],
        "threshold": 0.5,
    }
    version = ModelRegistry().register(create_model("mobilenetv3_small_050", 2).eval(), card)
    return f"tinyhisto@{version}"


@pytest.fixture
def films(tmp_path: Path) -> Path:
    """A folder of two single-channel films (mammograms by the readers' rule)."""
    folder = tmp_path / "films"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 40), dtype=np.uint8)).save(folder / name)
    return folder


def _queue(films: Path, model: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [PATHREVIEW, "review", "queue", str(films), "--model", model, "--out", str(out)]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=600)


def test_a_model_of_the_other_modality_is_refused(
    histology_model: str, films: Path, tmp_path: Path
) -> None:
    done = _queue(films, histology_model, tmp_path / "queue.csv")
    assert done.returncode == 2, done.stdout
    assert "trained on histology images" in done.stderr and "a.png" in done.stderr
    assert "--allow-modality-mismatch" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "queue.csv").exists()


def test_the_refusal_can_be_overridden(histology_model: str, films: Path, tmp_path: Path) -> None:
    out = tmp_path / "queue.csv"
    done = _queue(films, histology_model, out, "--allow-modality-mismatch", "--tta", "none")
    assert done.returncode == 0, done.stderr
    assert len(list(csv.DictReader(out.open()))) == 2


def test_a_folder_as_out_is_refused_naming_a_file_to_give(
    histology_model: str, films: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "queues"
    folder.mkdir()
    done = _queue(films, histology_model, folder, "--allow-modality-mismatch", "--tta", "none")
    assert done.returncode == 2, done.stderr
    assert f"--out {folder} is a folder; give a file name, e.g. {folder / 'queue.csv'}" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr and list(folder.iterdir()) == []
