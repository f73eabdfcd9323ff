"""`pathreview predict-slides --stain-target FILE`: a fitted stain target for a whole cohort.

The file is read and checked once, before any slide; its state travels in the ``CohortJob``
to the workers (or runs here with ``--workers 0``) and is part of each slide's key, so a re-run
with another target runs again instead of skipping the slides as finished.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from slide_fixtures import register_tiny, tissue_slide, write_slide

from napari_pathreview.cli import main
from napari_pathreview.inference import Predictor
from napari_pathreview.inference.cache import SlideCache, cached_slide, read_result
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slides import SlideSettings, predict_slide
from napari_pathreview.stain import get_normalizer

REFERENCE = (
    Path(__file__).resolve().parents[2] / "sample_data/he_reference/HEnorm_python_example1.png"
)


def _fitted(path: Path, rgb: np.ndarray, method: str = "macenko") -> Path:
    """``path`` holding ``method`` fitted to ``rgb``, as `pathreview stain fit` writes it."""
    path.write_text(json.dumps(get_normalizer(method).fit(rgb).to_dict()))
    return path


@pytest.fixture
def model_ref(registry) -> str:
    return register_tiny(registry)


@pytest.fixture
def slide_path(tmp_path: Path) -> Path:
    return write_slide(tmp_path / "slide.tif", tissue_slide(384, 512))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """Macenko fitted to the H&E reference image."""
    return _fitted(tmp_path / "macenko.json", cv2.imread(str(REFERENCE))[:, :, ::-1])


def _predict_slides(slide: Path, model: str, out: Path, *extra: str, workers: str = "0") -> int:
    """``pathreview predict-slides`` in this process; its exit status."""
    argv = ["predict-slides", str(slide), "--model", model, "--out", str(out), *extra]
    return main([*argv, "--workers", workers, "--device", "cpu", "--no-progress"])


def _tiles(predictor: Predictor, slide: Path) -> np.ndarray:
    source = as_slide(slide)
    try:
        return predict_slide(predictor, source, SlideSettings()).tile_probabilities
    finally:
        source.close()


@pytest.mark.parametrize("workers", ["0", "1"], ids=["in-process", "dask-local-cluster"])
def test_tile_probabilities_are_those_of_the_predictor_with_the_fitted_target(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "out"
    code = _predict_slides(
        slide_path, model_ref, out, "--stain-target", str(target), workers=workers
    )
    assert code == 0
    written = read_result(out / "slides" / "slide").tile_probabilities
    state = json.loads(target.read_text())
    normalised = _tiles(Predictor.from_registry(model_ref, device="cpu", stain=state), slide_path)
    unstained = _tiles(Predictor.from_registry(model_ref, device="cpu"), slide_path)
    np.testing.assert_allclose(written, normalised, rtol=0, atol=1e-5)
    assert np.abs(written - unstained).max() > 1e-3


def test_a_rerun_with_another_target_is_not_skipped_as_finished(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path, capsys
) -> None:
    other = _fitted(tmp_path / "other.json", tissue_slide(256, 256, seed=5))
    out = tmp_path / "out"
    assert _predict_slides(slide_path, model_ref, out, "--stain-target", str(target)) == 0
    first = read_result(out / "slides" / "slide").tile_probabilities
    capsys.readouterr()
    assert _predict_slides(slide_path, model_ref, out, "--stain-target", str(other)) == 0
    assert "1 slide(s) done, 0 skipped as finished" in capsys.readouterr().out
    second = read_result(out / "slides" / "slide").tile_probabilities
    assert np.abs(first - second).max() > 1e-4


def test_a_rerun_with_the_same_target_is_skipped_as_finished(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path, capsys
) -> None:
    args = ("--stain-target", str(target))
    assert _predict_slides(slide_path, model_ref, tmp_path / "out", *args) == 0
    capsys.readouterr()
    assert _predict_slides(slide_path, model_ref, tmp_path / "out", *args) == 0
    assert "0 slide(s) done, 1 skipped as finished" in capsys.readouterr().out


def _slides_csv_row(out: Path) -> dict[str, str]:
    with (out / "slides.csv").open(newline="") as handle:
        (row,) = csv.DictReader(handle)
    return row


def test_slides_csv_names_the_stain_method_and_the_target_id_the_run_printed(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert _predict_slides(slide_path, model_ref, out, "--stain-target", str(target)) == 0
    printed = re.search(
        r"stain target \S+: id ([0-9a-f]{12}) in slides\.csv", capsys.readouterr().out
    )
    row = _slides_csv_row(out)
    assert row["stain"] == "macenko"
    assert printed is not None and row["stain_target"] == printed.group(1)


def test_slides_csv_gives_each_fitted_target_its_own_id_and_a_copy_the_same(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(json.loads(target.read_text()), indent=2))  # same state
    other = _fitted(tmp_path / "other.json", tissue_slide(256, 256, seed=5))
    ids = []
    for name, path in (("a", target), ("b", copy), ("c", other)):
        assert (
            _predict_slides(slide_path, model_ref, tmp_path / name, "--stain-target", str(path))
            == 0
        )
        ids.append(_slides_csv_row(tmp_path / name)["stain_target"])
    assert ids[0] == ids[1] != ids[2]


def test_slides_csv_without_a_target_names_the_card_s_method_and_no_target(
    model_ref: str, slide_path: Path, tmp_path: Path
) -> None:
    assert _predict_slides(slide_path, model_ref, tmp_path / "out") == 0
    row = _slides_csv_row(tmp_path / "out")
    assert row["stain"] == "none" and row["stain_target"] == ""


def test_slides_csv_names_the_card_s_own_fitted_target_with_the_id_its_file_gets(
    registry, slide_path: Path, target: Path, tmp_path: Path, capsys
) -> None:
    state = json.loads(target.read_text())
    stained = register_tiny(
        registry, name="tinystained", preprocess={"stain_method": "macenko", "stain_target": state}
    )
    assert _predict_slides(slide_path, stained, tmp_path / "card") == 0
    printed = re.search(r"stain target of \S+: id ([0-9a-f]{12})", capsys.readouterr().out)
    by_card = _slides_csv_row(tmp_path / "card")
    assert (
        _predict_slides(slide_path, stained, tmp_path / "file", "--stain-target", str(target)) == 0
    )
    by_file = _slides_csv_row(tmp_path / "file")
    assert by_card["stain"] == "macenko" and by_card["stain_target"] != ""
    assert printed is not None and by_card["stain_target"] == printed.group(1)
    assert by_card["stain_target"] == by_file["stain_target"]


def _bad_targets(tmp_path: Path, target: Path) -> dict[str, tuple[Path, list[str]]]:
    """name → (target file, extra options): each must be refused before any slide."""
    not_json = tmp_path / "not_json.json"
    not_json.write_text("{method: macenko")
    unfitted = tmp_path / "unfitted.json"
    unfitted.write_text(json.dumps({"method": "macenko"}))
    return {
        "missing": (tmp_path / "missing.json", []),
        "not-json": (not_json, []),
        "unfitted": (unfitted, []),
        "other-method-than-stain": (target, ["--stain", "reinhard"]),
    }


@pytest.mark.parametrize("case", ["missing", "not-json", "unfitted", "other-method-than-stain"])
def test_a_bad_target_file_is_refused_naming_it_before_any_slide(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path, capsys, case: str
) -> None:
    bad, extra = _bad_targets(tmp_path, target)[case]
    out = tmp_path / "out"
    code = _predict_slides(slide_path, model_ref, out, "--stain-target", str(bad), *extra)
    err = capsys.readouterr().err
    assert code == 2
    assert "--stain-target" in err and bad.name in err and "Traceback" not in err
    assert not out.exists()


def test_the_slide_cache_keeps_one_entry_per_target(
    model_ref: str, slide_path: Path, target: Path, tmp_path: Path
) -> None:
    other = _fitted(tmp_path / "other.json", tissue_slide(256, 256, seed=5))
    cache = SlideCache(tmp_path / "cache")
    for path in (target, other, target):
        stain = json.loads(path.read_text())
        predictor = Predictor.from_registry(model_ref, device="cpu", stain=stain)
        list(cached_slide(predictor, as_slide(slide_path), SlideSettings(), cache))
    assert len(cache.entries()) == 2
