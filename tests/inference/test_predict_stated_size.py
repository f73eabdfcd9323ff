"""``pathreview predict`` resamples a film from the pixel size napari opens it at: the size the
file states wins over the size its mini-MIAS name (``mdbNNN``) documents, as in the reader."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_pathreview.models import create_model
from napari_pathreview.registry import ModelRegistry

CARD = {
    "name": "tiny-film",
    "task": "mammogram",
    "classes": ["normal", "benign", "malignant"],
    "modality": "mammogram",
    "input_size": [3, 64, 64],
    "preprocess": {"input_size": [3, 64, 64], "pixel_size": 0.2, "pixel_unit": "mm"},
    "description": "tiny random-weight film model trained at 0.2 mm/px",
}


def _film(path: Path, **resolution) -> Path:
    """A 128² grey film (a 1024² mini-MIAS film is 200 µm/px; at 128 px its name says 1.6 mm)."""
    pixels = np.random.default_rng(3).integers(20, 230, (128, 128), dtype=np.uint8)
    tifffile.imwrite(path, pixels, **resolution)
    return path


def test_predict_resamples_a_mias_named_film_from_the_size_its_file_states(tmp_path) -> None:
    torch.manual_seed(0)
    version = ModelRegistry().register(create_model("mobilenetv3_small_050", 3), CARD)
    at_02_mm = {"resolution": (50, 50), "resolutionunit": "CENTIMETER"}
    films = {
        "mdb001.tif": _film(tmp_path / "mdb001.tif", **at_02_mm),  # states 0.2 mm/px
        "film.tif": _film(tmp_path / "film.tif", **at_02_mm),  # the same, with no MIAS name
        "mdb002.tif": _film(tmp_path / "mdb002.tif"),  # states none: the name's 1.6 mm
    }
    out = tmp_path / "out"
    console_script = str(Path(sys.executable).with_name("pathreview"))
    command = [console_script, "predict", *map(str, films.values()), "--model",
               f"tiny-film@{version}", "--device", "cpu", "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with (out / "predictions.csv").open(newline="") as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    p = {name: [float(rows[name][f"p_{c}"]) for c in CARD["classes"]] for name in films}
    # read at 0.2 mm/px as the file says (and napari shows), like the same film without the name
    np.testing.assert_allclose(p["mdb001.tif"], p["film.tif"], atol=1e-5)
    # not enlarged 8× as the name's 1.6 mm/px would have it
    assert np.abs(np.subtract(p["mdb001.tif"], p["mdb002.tif"])).max() > 1e-4
