"""Slide QC: every tissue tile a slide prediction reads is quality-checked; the slide flagged."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zarr
from slide_fixtures import register_tiny, tissue_slide, write_slide

from napari_pathreview.inference import Predictor
from napari_pathreview.inference.cache import SlideCache, cached_slide
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slide_qc import COLUMNS, slide_quality
from napari_pathreview.inference.slides import SlideResult, SlideSettings, predict_slide

BLURRED_TO = 384
"""Columns of level 0 (0.25 µm/px) the blurred slide has out of focus: 3 of its 6 grid columns."""


@pytest.fixture
def model_ref(registry) -> str:
    return register_tiny(registry)


@pytest.fixture
def sharp(tmp_path: Path) -> Path:
    return write_slide(tmp_path / "sharp.tif", tissue_slide())


@pytest.fixture
def blurred(tmp_path: Path) -> Path:
    """The sharp slide with its left half out of focus (a Gaussian blur, sigma 4 px)."""
    image = tissue_slide()
    image[:, :BLURRED_TO] = cv2.GaussianBlur(image[:, :BLURRED_TO], (0, 0), 4)
    return write_slide(tmp_path / "blurred.tif", image)


def _in_blur(result: SlideResult) -> np.ndarray:
    """Which classified tiles lie wholly in the blurred columns (tiles are one cell, no overlap)."""
    return (result.tile_cols + 1) * result.grid.cell[1] <= BLURRED_TO


def _pathreview(*args: Any) -> subprocess.CompletedProcess:
    exe = shutil.which("pathreview", path=str(Path(sys.executable).parent)) or "pathreview"
    command = [exe, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiles_of_a_blurred_region_are_flagged_and_the_share_is_theirs(
    model_ref: str, blurred: Path
) -> None:
    predictor = Predictor.from_registry(model_ref, device="cpu")
    result = predict_slide(predictor, as_slide(blurred), SlideSettings())
    in_blur = _in_blur(result)
    assert 0 < in_blur.sum() < len(in_blur)  # both kinds of tile are there
    blur_bit = result.tile_qc & 1  # bit 0: blur (slide_qc.TILE_CHECKS)
    np.testing.assert_array_equal(blur_bit.astype(bool), in_blur)
    qc = slide_quality(result, 0.25)
    assert qc.n_tiles == len(result.tile_probabilities)
    assert qc.shares["blur"] == pytest.approx(in_blur.mean())
    assert qc.flagged_share == pytest.approx(in_blur.mean())
    assert not qc.passed and "blurry" in qc.reasons[0]


def test_a_sharp_slide_is_not_flagged(model_ref: str, sharp: Path) -> None:
    predictor = Predictor.from_registry(model_ref, device="cpu")
    result = predict_slide(predictor, as_slide(sharp), SlideSettings())
    qc = slide_quality(result, 0.25)
    assert qc.passed and qc.reasons == () and qc.flagged_share == 0.0
    assert qc.n_tiles == len(result.tile_probabilities) > 0


def test_the_slide_is_flagged_only_above_its_share_of_failing_tiles(
    model_ref: str, blurred: Path
) -> None:
    predictor = Predictor.from_registry(model_ref, device="cpu")
    result = predict_slide(predictor, as_slide(blurred), SlideSettings())
    share = slide_quality(result).flagged_share
    assert slide_quality(result, share).passed  # "more than": at the share it passes
    assert not slide_quality(result, share - 0.01).passed


def test_tiles_are_judged_by_the_card_s_qc_thresholds(registry, blurred: Path) -> None:
    lenient = register_tiny(registry, name="noblur", qc={"blur_threshold": 0.0})  # blur check off
    predictor = Predictor.from_registry(lenient, device="cpu")
    result = predict_slide(predictor, as_slide(blurred), SlideSettings())
    assert slide_quality(result).passed and not result.tile_qc.any()


def test_flagged_tiles_are_classified_as_without_qc_not_dropped(
    model_ref: str, blurred: Path
) -> None:
    """As ``predict`` flags a failing image: the slide's tiles and probabilities are unchanged."""
    checked = predict_slide(
        Predictor.from_registry(model_ref, device="cpu"), as_slide(blurred), SlideSettings()
    )
    unchecked = predict_slide(
        Predictor.from_registry(model_ref, device="cpu", qc=False),
        as_slide(blurred),
        SlideSettings(),
    )
    assert checked.tile_qc.any() and unchecked.tile_qc is None
    np.testing.assert_array_equal(checked.tile_cols, unchecked.tile_cols)
    np.testing.assert_allclose(checked.tile_probabilities, unchecked.tile_probabilities)
    assert checked.aggregate == unchecked.aggregate


class _CountingReads:
    """A real slide source that counts its ``read_region`` calls."""

    def __init__(self, source: Any) -> None:
        self.source, self.reads = source, 0

    def read_region(self, *args: Any) -> Any:
        self.reads += 1
        return self.source.read_region(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)


def test_qc_reads_no_tile_a_second_time(model_ref: str, blurred: Path) -> None:
    counts = {}
    for qc in (False, True):
        predictor = Predictor.from_registry(model_ref, device="cpu", qc=qc)
        source = _CountingReads(as_slide(blurred))
        result = predict_slide(predictor, source, SlideSettings(read_workers=1))
        counts[qc] = source.reads
    assert result.tile_qc is not None and counts[True] == counts[False]


def test_a_cached_slide_keeps_its_tiles_checks_and_qc_off_is_cached_apart(
    model_ref: str, blurred: Path, tmp_path: Path
) -> None:
    cache = SlideCache(tmp_path / "cache")
    predictor = Predictor.from_registry(model_ref, device="cpu")
    first = list(cached_slide(predictor, as_slide(blurred), SlideSettings(), cache))[-1]
    (hit,) = list(cached_slide(predictor, as_slide(blurred), SlideSettings(), cache))
    np.testing.assert_array_equal(hit.tile_qc, first.tile_qc)
    off = Predictor.from_registry(model_ref, device="cpu", qc=False)
    unchecked = list(cached_slide(off, as_slide(blurred), SlideSettings(), cache))[-1]
    assert unchecked.tile_qc is None and len(cache.entries()) == 2


def test_predict_slides_writes_the_qc_columns_and_names_the_flagged_slide(
    model_ref: str, sharp: Path, blurred: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = _pathreview("predict-slides", sharp, blurred, "--model", model_ref, "--out", out,
                       "--workers", 0, "--device", "cpu", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["slide"]: row for row in _rows(out / "slides.csv")}
    assert set(COLUMNS) <= set(rows["sharp"])
    assert rows["sharp"]["qc_passed"] == "True" and rows["sharp"]["qc_reasons"] == ""
    flagged = rows["blurred"]
    assert flagged["qc_passed"] == "False" and "blurry" in flagged["qc_reasons"]
    assert int(flagged["qc_tiles"]) == int(flagged["n_tiles"])
    assert float(flagged["qc_blur_share"]) == pytest.approx(0.5, abs=1e-4)  # 6 of 12 tiles
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("QC flagged")]
    assert line.startswith("QC flagged 1 of 2 slide(s)") and line.endswith(": blurred")
    folder = out / "slides" / "blurred"
    meta = zarr.open_group(str(folder / "result.zarr"), mode="r").attrs["meta"]
    assert meta["qc"]["qc_passed"] is False
    tiles = json.loads((folder / "tiles.geojson").read_text())["features"]
    assert sorted({t["properties"]["qc"] for t in tiles}) == ["", "blur"]


def test_predict_slides_without_qc_leaves_the_qc_cells_empty(
    model_ref: str, blurred: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = _pathreview("predict-slides", blurred, "--model", model_ref, "--out", out, "--no-qc",
                       "--workers", 0, "--device", "cpu", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = _rows(out / "slides.csv")
    assert all(row[column] == "" for column in COLUMNS)
    assert "QC" not in done.stdout


def test_a_share_out_of_range_is_refused_under_its_flag(
    model_ref: str, sharp: Path, tmp_path: Path
) -> None:
    done = _pathreview("predict-slides", sharp, "--model", model_ref, "--out", tmp_path / "o",
                       "--qc-max-flagged", 1.5, "--workers", 0)  # fmt: skip
    assert done.returncode == 2 and "--qc-max-flagged" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()
