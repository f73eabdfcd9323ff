"""`pathreview predict-slides` on a DICOM z-stack (several focal planes) classifies one stated
plane, the middle one, the plane the viewer shows, and records it in ``slides.csv`` and the
result's meta."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from slide_fixtures import register_tiny, tissue_slide

from napari_pathreview.inference import Predictor
from napari_pathreview.inference.cache import read_result
from napari_pathreview.inference.cohort_records import result_meta
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slides import SlideSettings, predict_slide

IO_TESTS = Path(__file__).resolve().parents[1] / "io"
if str(IO_TESTS) not in sys.path:
    sys.path.append(str(IO_TESTS))  # the DICOM WSI builder the io tests share

from slide_builders import write_dicom_wsi  # noqa: E402


def _console_script() -> str:
    """The installed ``pathreview`` console script (beside this Python)."""
    script = Path(sys.executable).with_name("pathreview")
    return str(script) if script.exists() else shutil.which("pathreview") or "pathreview"


@pytest.fixture
def planes() -> np.ndarray:
    """Three focal planes of a section, each its own texture, at the tiny model's 0.5 µm."""
    return np.stack([tissue_slide(192, 256, seed=plane) for plane in range(3)])


def test_predict_slides_classifies_a_dicom_z_stack_at_its_middle_plane_and_records_it(
    registry, tmp_path, planes
):
    model = register_tiny(registry)
    stack = write_dicom_wsi(tmp_path / "zstack", planes, n_levels=2, mpp=0.5, plane_um=2.0)
    middle = write_dicom_wsi(tmp_path / "middle", planes[1], n_levels=2, mpp=0.5)
    out = tmp_path / "out"
    argv = ["predict-slides", stack[0], "--model", model, "--out", out, "--workers", "0"]
    argv += ["--device", "cpu", "--no-progress"]
    result = subprocess.run([_console_script(), *map(str, argv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with open(out / "slides.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert float(row["focal_plane_um"]) == 2.0 and row["focal_planes"] == "3"
    [folder] = (out / "slides").iterdir()
    assert result_meta(folder)["focal_plane_um"] == 2.0
    source = as_slide(middle[0])
    try:
        alone = predict_slide(Predictor.from_registry(model, device="cpu"), source, SlideSettings())
    finally:
        source.close()
    written = read_result(folder).tile_probabilities
    assert np.allclose(written, alone.tile_probabilities, atol=1e-5)
