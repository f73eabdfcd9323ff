"""Slide results: the zarr/GeoJSON cache, `pathreview cache`, and cohort runs on Dask."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from slide_fixtures import register_tiny, tissue_slide, write_slide

from napari_pathreview.cli import main
from napari_pathreview.inference import Predictor
from napari_pathreview.inference.cache import SlideCache, cached_slide
from napari_pathreview.inference.cohort import (
    CohortJob,
    SchedulerUnreachableError,
    job_from_settings,
    run_cohort,
)
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slides import SlideResult, SlideSettings


@pytest.fixture
def model_ref(registry) -> str:
    return register_tiny(registry)


@pytest.fixture
def slide_path(tmp_path):
    return write_slide(tmp_path / "slide.tif", tissue_slide(384, 512))


def _pathreview(*args: str) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-m", "napari_pathreview.cli", *args]
    return subprocess.run(exe, capture_output=True, text=True, timeout=600)


def test_second_run_is_served_from_the_cache_with_the_same_numbers(
    model_ref, slide_path, tmp_path
) -> None:
    predictor = Predictor.from_registry(model_ref, device="cpu")
    cache = SlideCache(tmp_path / "cache")
    first = list(cached_slide(predictor, as_slide(slide_path), SlideSettings(), cache))
    again = list(cached_slide(predictor, as_slide(slide_path), SlideSettings(), cache))
    assert len(first) > 2 and len(again) == 1 and isinstance(again[0], SlideResult)
    np.testing.assert_array_equal(first[-1].prob_maps, again[0].prob_maps)
    assert again[0].grid == first[-1].grid and again[0].aggregate == first[-1].aggregate
    folder = cache.entries()[0].folder
    geo = json.loads((folder / "tiles.geojson").read_text())
    assert len(geo["features"]) == int(first[-1].coverage.sum())
    feature = geo["features"][0]
    assert (
        feature["geometry"]["type"] == "Polygon" and feature["properties"]["objectType"] == "tile"
    )
    assert set(feature["properties"]["measurements"]) == {"P(benign)", "P(malignant)"}


def test_other_settings_or_tta_are_cached_separately(model_ref, slide_path, tmp_path) -> None:
    cache = SlideCache(tmp_path / "cache")
    for overlap, tta in ((0.0, "none"), (0.5, "none"), (0.0, "flips")):
        predictor = Predictor.from_registry(model_ref, device="cpu", tta=tta)
        list(cached_slide(predictor, as_slide(slide_path), SlideSettings(overlap=overlap), cache))
    assert len(cache.entries()) == 3


def test_a_slide_given_another_pixel_size_is_analysed_again_not_served_the_old_result(
    model_ref, tmp_path
) -> None:
    """The Analyze dock's way: a slide stating no µm/px, its size typed, then corrected."""
    from napari_pathreview.inference.layer_slide import LevelsSlide

    predictor = Predictor.from_registry(model_ref, device="cpu")
    cache = SlideCache(tmp_path / "cache")
    levels = [tissue_slide(384, 512)]
    typed = list(cached_slide(predictor, LevelsSlide(levels, 0.25), SlideSettings(), cache))
    corrected = list(cached_slide(predictor, LevelsSlide(levels, 0.5), SlideSettings(), cache))
    assert len(corrected) > 1  # the engine ran (a cache hit is the result alone)
    assert corrected[-1].grid.level0_um_per_px == 0.5
    assert corrected[-1].grid.shape != typed[-1].grid.shape


def test_a_rescanned_mirax_is_analysed_again_not_served_its_old_result(model_ref, tmp_path) -> None:
    """A re-scan rewrites the Data files (the tiles) and Index.dat, and leaves the .mrxs and
    Slidedat.ini as they were: the new pixels are analysed, not the old heatmap served."""
    import shutil

    from multifile_slides import write_mirax
    from napari_pathreview.inference.slides import predict_slide

    path = write_mirax(tmp_path / "case.mrxs", tissue_slide(384, 512))
    rescan = write_mirax(tmp_path / "rescan" / "case.mrxs", tissue_slide(384, 512, left_of=200))
    predictor = Predictor.from_registry(model_ref, device="cpu")
    cache = SlideCache(tmp_path / "cache")
    first = list(cached_slide(predictor, as_slide(path), SlideSettings(), cache))[-1]
    index = {f: f.read_bytes() for f in (path, path.with_suffix("") / "Slidedat.ini")}
    for name in ("Data0000.dat", "Data0001.dat", "Index.dat"):
        shutil.copyfile(rescan.with_suffix("") / name, path.with_suffix("") / name)
    assert all(f.read_bytes() == data for f, data in index.items())
    again = list(cached_slide(predictor, as_slide(path), SlideSettings(), cache))
    assert len(again) > 1 and len(cache.entries()) == 2  # the engine ran; both are kept
    fresh = predict_slide(predictor, as_slide(path), SlideSettings())
    np.testing.assert_array_equal(again[-1].prob_maps, fresh.prob_maps)
    assert not np.array_equal(again[-1].coverage, first.coverage)


def test_the_cache_evicts_least_recently_used_entries_past_its_limit(
    model_ref, slide_path, tmp_path
) -> None:
    predictor = Predictor.from_registry(model_ref, device="cpu")
    big = SlideCache(tmp_path / "cache")
    list(cached_slide(predictor, as_slide(slide_path), SlideSettings(), big))
    one = big.entries()[0].bytes
    small = SlideCache(tmp_path / "cache", max_bytes=int(one * 1.5))
    list(cached_slide(predictor, as_slide(slide_path), SlideSettings(min_tissue=0.5), small))
    entries = small.entries()
    assert len(entries) == 1 and entries[0].fields["settings"]["min_tissue"] == 0.5


def test_cache_cli_lists_and_clears(model_ref, slide_path) -> None:
    predictor = Predictor.from_registry(model_ref, device="cpu")
    list(cached_slide(predictor, as_slide(slide_path), SlideSettings(), SlideCache()))
    listed = _pathreview("cache", "list")
    assert listed.returncode == 0 and "1 cached slide result" in listed.stdout
    assert "slide.tif" in listed.stdout and model_ref in listed.stdout
    cleared = _pathreview("cache", "clear")
    assert cleared.returncode == 0 and "removed 1" in cleared.stdout
    assert SlideCache().entries() == []


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_cohort_on_a_two_worker_local_cluster_equals_a_single_process_run(
    model_ref, tmp_path
) -> None:
    slides = [
        write_slide(tmp_path / "in" / f"s{i}.tif", tissue_slide(384, 512, seed=i)) for i in range(3)
    ]
    broken = tmp_path / "in" / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a tiff")
    settings = SlideSettings(batch_size=8)
    on_dask = run_cohort(
        [tmp_path / "in"],
        job_from_settings(model_ref, tmp_path / "dask", settings),
        workers=2,
        progress=False,
    )
    alone = run_cohort(
        slides,
        job_from_settings(model_ref, tmp_path / "alone", settings),
        workers=0,
        progress=False,
    )
    assert [r["slide"] for r in on_dask.rows] == ["s0", "s1", "s2"]
    assert len(on_dask.failures) == 1 and "broken.tif" in on_dask.failures[0]["path"]
    assert "broken.tif" in _rows(on_dask.failures_csv)[0]["path"]
    dask_rows, alone_rows = _rows(on_dask.slides_csv), _rows(alone.slides_csv)
    numeric = [k for k in alone_rows[0] if k.startswith(("mean_", "max_", "topk_", "tissue_"))]
    for a, b in zip(dask_rows, alone_rows, strict=True):
        assert a["slide"] == b["slide"]
        for key in numeric:
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), key
    for stem in ("s0", "s1", "s2"):
        assert (tmp_path / "dask" / "slides" / stem / "result.zarr").is_dir()
        assert (tmp_path / "dask" / "slides" / stem / "tiles.geojson").is_file()
    rerun = run_cohort(
        slides,
        job_from_settings(model_ref, tmp_path / "alone", settings),
        workers=0,
        progress=False,
    )
    assert rerun.rows == [] and len(rerun.skipped) == 3
    assert len(_rows(rerun.slides_csv)) == 3


def test_an_unreachable_scheduler_is_a_clear_error(model_ref, slide_path, tmp_path) -> None:
    job = CohortJob(model_ref, str(tmp_path / "out"))
    with pytest.raises(SchedulerUnreachableError, match="no Dask scheduler answered at"):
        run_cohort([slide_path], job, scheduler="tcp://127.0.0.1:9", progress=False)


def test_predict_slides_cli_writes_the_cohort_outputs(model_ref, slide_path, tmp_path) -> None:
    out = tmp_path / "out"
    done = _pathreview(
        "predict-slides",
        str(slide_path),
        "--model",
        model_ref,
        "--out",
        str(out),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    (row,) = _rows(out / "slides.csv")
    assert row["slide"] == "slide" and float(row["um_per_px"]) == 0.5
    assert float(row["tissue_area_mm2"]) > 0 and 0 <= float(row["mean_malignant"]) <= 1


def test_a_local_cluster_run_does_not_print_dask_start_and_stop_lines(
    model_ref, slide_path, tmp_path
) -> None:
    out = tmp_path / "out"
    args = ("--model", model_ref, "--out", str(out), "--workers", "1", "--device", "cpu")
    done = _pathreview("predict-slides", str(slide_path), *args, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "distributed." not in done.stderr
    assert "1 slide(s) done" in done.stdout


def test_a_blank_slide_in_a_cohort_is_a_failure_not_a_row_of_nan(
    model_ref, slide_path, tmp_path
) -> None:
    blank = write_slide(tmp_path / "blank.tif", np.full((384, 512, 3), 240, np.uint8))
    out = tmp_path / "out"
    done = _pathreview(
        "predict-slides", str(slide_path), str(blank), "--model", model_ref, "--out", str(out),
        "--workers", "0", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert [row["slide"] for row in _rows(out / "slides.csv")] == ["slide"]
    (failure,) = _rows(out / "failures.csv")
    assert failure["path"] == str(blank) and "holds 25% tissue" in failure["error"]


def test_a_cohort_without_tissue_detection_leaves_the_tissue_area_empty(
    model_ref, slide_path, tmp_path
) -> None:
    out = tmp_path / "out"
    done = _pathreview(
        "predict-slides", str(slide_path), "--model", model_ref, "--out", str(out),
        "--workers", "0", "--device", "cpu", "--no-progress", "--no-tissue",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = _rows(out / "slides.csv")
    assert row["tissue_area_mm2"] == "" and 0 <= float(row["mean_malignant"]) <= 1


def test_predict_slides_cli_refuses_a_card_without_resolution(registry, slide_path, tmp_path):
    ref = register_tiny(registry, None, "nores")
    done = _pathreview(
        "predict-slides",
        str(slide_path),
        "--model",
        ref,
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "0",
    )
    assert done.returncode == 2 and "pixel_size" in done.stderr
    assert "Traceback" not in done.stderr


def test_predict_slides_cli_reports_a_dead_scheduler_without_traceback(
    model_ref, slide_path, tmp_path
):
    done = _pathreview(
        "predict-slides",
        str(slide_path),
        "--model",
        model_ref,
        "--out",
        str(tmp_path / "o"),
        "--scheduler",
        "tcp://127.0.0.1:9",
    )
    assert done.returncode == 2 and "no Dask scheduler answered at tcp://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_predict_slides_cli_takes_the_pixel_size_of_an_unscaled_slide_from_mpp(
    model_ref, tmp_path
) -> None:
    unscaled = write_slide(tmp_path / "unscaled.tif", tissue_slide(384, 512), um_per_px=None)
    common = ("--model", model_ref, "--workers", "0", "--device", "cpu", "--no-progress")
    refused = _pathreview("predict-slides", str(unscaled), "--out", str(tmp_path / "a"), *common)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "--slide-um-per-px" in (tmp_path / "a" / "failures.csv").read_text()
    done = _pathreview(
        "predict-slides", str(unscaled), "--out", str(tmp_path / "b"), "--mpp", "0.25", *common
    )
    assert done.returncode == 0, done.stderr
    (row,) = _rows(tmp_path / "b" / "slides.csv")
    assert row["slide"] == "unscaled" and float(row["um_per_px"]) == 0.5


def test_the_readme_names_every_slides_csv_column_and_um_per_px_as_the_model_s(
    model_ref, tmp_path
) -> None:
    fine = write_slide(tmp_path / "fine.tif", tissue_slide(384, 512), um_per_px=0.25)
    out = tmp_path / "out"
    argv = ["predict-slides", str(fine), "--model", model_ref, "--out", str(out),
            "--workers", "0", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    (row,) = _rows(out / "slides.csv")
    assert float(row["um_per_px"]) == 0.5  # the model's 0.5 µm/px, not the scan's 0.25
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("# slides.csv: "))
    documented = [c.strip() for c in line.split(":", 1)[1].split(",")]
    per_class = {"mean_<class>…", "max_<class>…", "topk_mean_<class>…"}
    # a column only some models or slides write (a patch MIL model's mil_<class>…, a DICOM
    # z-stack's focal plane) is not this one's
    documented = [c for c in documented if not ("models only" in c or "z-stacks only" in c)]
    named = [c.split(" ")[0] for c in documented]
    expanded = [
        col
        for c in named
        for col in ([c.replace("<class>…", k) for k in ("benign", "malignant")]
                    if c in per_class else [c])
    ]  # fmt: skip
    assert expanded == list(row)
    assert "the model's analysis resolution" in documented[named.index("um_per_px")]


def test_a_slide_refused_on_a_dask_worker_is_a_failures_row_without_a_traceback(
    model_ref, tmp_path
) -> None:
    unscaled = write_slide(tmp_path / "unscaled.tif", tissue_slide(384, 512), um_per_px=None)
    out = tmp_path / "out"
    done = _pathreview(
        "predict-slides", str(unscaled), "--model", model_ref, "--out", str(out),
        "--workers", "1", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 1
    (failure,) = _rows(out / "failures.csv")
    assert failure["error"].startswith("SlideScaleError: ") and "--mpp" in failure["error"]
    assert "Compute Failed" not in done.stderr and "Traceback" not in done.stderr


def _exit_slowly() -> None:
    """On a worker: take 6 s to exit, as unloading torch can on a busy machine."""
    import atexit
    import time

    atexit.register(time.sleep, 6)


def test_closing_the_local_cluster_does_not_warn_of_a_worker_slow_to_exit(caplog) -> None:
    from napari_pathreview.inference import cohort

    client, cluster = cohort._client(None, 1)
    client.run(_exit_slowly)
    with caplog.at_level(logging.WARNING):
        cohort._close(client, cluster)
    assert not [r for r in caplog.records if "still alive" in r.getMessage()]


def test_a_worker_s_model_load_and_warm_up_are_its_first_slide_s_fields_not_its_seconds(
    model_ref, tmp_path
) -> None:
    """One worker, two slides: the first slide's row carries the load and the warm-up forward
    in fields of their own; every row's seconds is its slide engine's own clock."""
    from napari_pathreview.inference.cache import read_result

    slides = [write_slide(tmp_path / f"s{i}.tif", tissue_slide(256, 384, seed=i)) for i in (0, 1)]
    out = tmp_path / "out"
    done = _pathreview(
        "predict-slides", *map(str, slides), "--model", model_ref, "--out", str(out),
        "--workers", "1", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = _rows(out / "slides.csv")
    first = [r for r in rows if float(r["model_load_s"]) > 0]
    assert len(first) == 1  # one worker: it loaded the model once
    assert [float(r["model_warmup_s"]) > 0 for r in rows] == [r in first for r in rows]
    for row in rows:
        engine = read_result(out / "slides" / row["slide"]).seconds
        assert float(row["seconds"]) == round(engine, 3)  # nothing added to the engine's time
    assert "model loaded by 1 worker(s)" in done.stdout and "warmed up" in done.stdout


def test_a_worker_warms_its_model_up_once_before_its_first_slide_s_tiles(
    model_ref, tmp_path
) -> None:
    """The warm-up is the model's first forward (a blank batch at the engine's batch shape),
    run before the first slide's tiles and not again for the next slide."""
    from napari_pathreview.inference import cohort

    slides = [write_slide(tmp_path / f"s{i}.tif", tissue_slide(256, 384, seed=i)) for i in (0, 1)]
    settings = SlideSettings(batch_size=4)
    job = job_from_settings(model_ref, tmp_path / "out", settings, device="cpu")
    cohort._worker_predictor.cache_clear()
    loaded = cohort._worker_predictor(job.model_ref, "cpu", "null", None, job.home, job.qc)
    blank: list[bool] = []  # per forward: were all its inputs one blank (constant) tile?

    def record(module, inputs, output) -> None:
        x = inputs[0]
        blank.append(bool((x == x[:1, :, :1, :1]).all()))

    hook = loaded.predictor.model.register_forward_hook(record)
    try:
        summary = run_cohort(slides, job, workers=0, progress=False)
    finally:
        hook.remove()
        cohort._worker_predictor.cache_clear()
    assert len(summary.rows) == 2 and len(blank) > 2
    assert blank[0] and not any(blank[1:])  # one warm-up, first, then only slide tiles
    assert [r["model_warmup_s"] > 0 for r in summary.rows] == [True, False]
