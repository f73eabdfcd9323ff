"""``pathreview predict`` classifies a large image by the Analyze dock's rule and steps.

A strip of the two BreaKHis sample images, 1700 px long (over the 1600-px line), goes through
the console script and through the dock's compute core (``analysis.analyse``) with the same
settings; both must give the same probabilities (and, with a CAM, the same map).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from slide_fixtures import register_tiny

from napari_pathreview.inference.analysis import AnalysisRequest, AnalysisResult, analyse
from napari_pathreview.inference.large_images import TILE_ABOVE_PIXELS
from napari_pathreview.inference.slide_grid import SlideSettings
from napari_pathreview.io import load_image

CLI = [sys.executable, "-m", "napari_pathreview.cli"]
BREAKHIS = ("SOB_B_F-14-9133-40-001.png", "SOB_M_DC-14-2523-40-010.png")


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def mosaic(tmp_path: Path, sample_data: Path) -> Path:
    """A 1700×192 H&E strip cut across the BreaKHis fields side by side: over the 1600-px
    line, yet few tiles; its PNG states no pixel size."""
    fields = [cv2.imread(str(sample_data / "breakhis" / name)) for name in BREAKHIS]
    strip = np.hstack([fields[0], fields[1], fields[0]])[100:292, :1700]
    path = tmp_path / "mosaic.png"
    cv2.imwrite(str(path), strip)
    return path


def _dock(model: str, image: Path, mode: str, um_per_px: float | None, cam: str | None) -> Any:
    request = AnalysisRequest(
        model_ref=model, device="cpu", cam_method=cam, slide=SlideSettings(mode=mode)
    )
    levels = load_image(image).levels
    steps = analyse(request, levels[0], "histology", um_per_px=um_per_px)
    return next(item for item in steps if isinstance(item, AnalysisResult))


def test_the_mosaic_is_over_the_line_the_dock_tiles_above(mosaic: Path) -> None:
    assert max(load_image(mosaic).levels[0].shape[:2]) == 1700 > TILE_ABOVE_PIXELS


@pytest.mark.parametrize(
    ("mode", "mpp"), [("preview", None), ("matched", 0.25)], ids=["preview", "matched-mpp"]
)
def test_predict_gives_the_analyze_dock_s_probabilities_for_a_large_image(
    registry: Any, mosaic: Path, tmp_path: Path, mode: str, mpp: float | None
) -> None:
    """It used to classify the image whole (stretched to 64 px) while the dock tiled it: on a
    2100×1380 mosaic P differed in the fourth decimal, and nothing said so."""
    model = register_tiny(registry)  # trained at 0.5 µm/px
    flags = ["--mode", mode] + (["--mpp", mpp] if mpp else [])
    done = _run("predict", mosaic, "--model", model, "--device", "cpu", *flags,
                "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = _rows(tmp_path / "out" / "predictions.csv")
    result = _dock(model, mosaic, mode, mpp, cam=None)
    assert result.tiled is not None  # the dock did tile it
    for name, p in result.probabilities.items():
        assert float(row[f"p_{name}"]) == pytest.approx(p, abs=2e-6)
    assert row["predicted_label"] == result.prediction.label and row["status"] == "ok"
    # and the same quality check: a tiled image's QC once went missing from one side
    assert result.prediction.qc is not None
    assert row["qc_passed"] == str(result.prediction.qc.passed)
    assert row["qc_reasons"] == ";".join(result.prediction.qc.reasons)


def test_predict_cam_of_a_large_image_is_the_dock_s_tiled_cam(
    binary_ref: str, mosaic: Path, tmp_path: Path
) -> None:
    done = _run("predict", mosaic, "--model", binary_ref, "--device", "cpu", "--mode", "preview",
                "--cam", "gradcam", "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    cam = np.load(tmp_path / "out" / "mosaic_gradcam.npy")
    result = _dock(binary_ref, mosaic, "preview", None, cam="gradcam")
    assert cam.shape == result.cam.cam.shape
    np.testing.assert_allclose(cam, result.cam.cam, atol=1e-5)
    assert (tmp_path / "out" / "mosaic_gradcam.png").is_file()


def test_predict_says_how_to_tile_a_large_image_that_states_no_pixel_size(
    registry: Any, mosaic: Path, tmp_path: Path
) -> None:
    """Matched tiling (the default, as in the dock) needs the image's µm/px: the row says
    which flags give it, the other images go on, and the exit status is 1."""
    model = register_tiny(registry)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.imread(str(mosaic))[:, :700])
    done = _run("predict", mosaic, small, "--model", model, "--device", "cpu",
                "--out", tmp_path / "out")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    large, whole = _rows(tmp_path / "out" / "predictions.csv")
    assert large["status"] == "error" and large["p_benign"] == ""
    assert "states no physical pixel size" in large["error"]
    assert "--mpp" in large["error"] and "--mode preview" in large["error"]
    assert whole["status"] == "ok" and whole["p_benign"] != ""


def _predict_cam(model: str, image: Path, out: Path) -> subprocess.CompletedProcess:
    done = _run("predict", image, "--model", model, "--device", "cpu", "--mode", "preview",
                "--cam", "gradcam", "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_predicting_a_large_image_again_reads_its_heatmap_and_cam_from_the_cache(
    binary_ref: str, mosaic: Path, tmp_path: Path
) -> None:
    """The Analyze dock's slide cache: the unchanged file, model and settings run no tile
    through the model the second time (both stages say they were served from the cache)."""
    first = _predict_cam(binary_ref, mosaic, tmp_path / "first")
    again = _predict_cam(binary_ref, mosaic, tmp_path / "again")
    assert "served from cache" not in first.stderr
    assert "slide result served from cache" in again.stderr
    assert "slide CAM served from cache" in again.stderr
    (row,) = _rows(tmp_path / "first" / "predictions.csv")
    (row_again,) = _rows(tmp_path / "again" / "predictions.csv")
    assert row_again["p_malignant"] == row["p_malignant"] and row_again["status"] == "ok"
    np.testing.assert_array_equal(
        np.load(tmp_path / "again" / "mosaic_gradcam.npy"),
        np.load(tmp_path / "first" / "mosaic_gradcam.npy"),
    )


def test_a_prediction_served_from_the_cache_says_so_and_keeps_the_stored_run_s_seconds_apart(
    binary_ref: str, mosaic: Path, sample_data: Path, tmp_path: Path
) -> None:
    """On a cache hit ``seconds`` is this run's own (the lookup), not the stored run's as if
    it had just been computed; ``cached_run_seconds`` keeps the stored run's. An image
    classified whole is never cached."""
    whole = sample_data / "breakhis" / BREAKHIS[0]
    for out in ("first", "again"):
        done = _run("predict", mosaic, whole, "--model", binary_ref, "--device", "cpu",
                    "--mode", "preview", "--out", tmp_path / out)  # fmt: skip
        assert done.returncode == 0, done.stderr
    first, first_whole = _rows(tmp_path / "first" / "predictions.csv")
    again, again_whole = _rows(tmp_path / "again" / "predictions.csv")
    assert (first["cached"], first["cached_run_seconds"]) == ("False", "")
    assert again["cached"] == "True" and again["cached_run_seconds"] == first["seconds"]
    assert float(again["seconds"]) > 0.0 and again["p_malignant"] == first["p_malignant"]
    for row in (first_whole, again_whole):
        assert (row["cached"], row["cached_run_seconds"]) == ("False", "")


@pytest.mark.parametrize("change", ["modified-file", "another-model"])
def test_a_large_image_modified_since_or_another_model_is_computed_afresh(
    registry: Any, binary_ref: str, mosaic: Path, tmp_path: Path, change: str
) -> None:
    """A new modification time (the same bytes: a file rewritten in place) or another model
    version is another cache key."""
    import os

    _predict_cam(binary_ref, mosaic, tmp_path / "first")
    model = binary_ref
    if change == "modified-file":
        stat = mosaic.stat()
        os.utime(mosaic, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    else:
        model = register_tiny(registry, name="tiny")  # tiny@2
        assert model != binary_ref
    again = _predict_cam(model, mosaic, tmp_path / "again")
    assert "served from cache" not in again.stderr
