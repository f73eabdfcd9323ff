"""Cohort runs that are stopped, resumed, or given slides of one file name in several folders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from slide_fixtures import register_tiny, tissue_slide, write_slide

from napari_pathreview.inference import cohort
from napari_pathreview.inference.cohort import job_from_settings, run_cohort
from napari_pathreview.inference.cohort_records import result_meta
from napari_pathreview.inference.slides import SlideSettings


@pytest.fixture
def model_ref(registry) -> str:
    return register_tiny(registry)


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _run(slides, model_ref, out):
    job = job_from_settings(model_ref, out, SlideSettings(batch_size=8), device="cpu")
    return run_cohort(slides, job, workers=0, progress=False)


def test_an_interrupted_cohort_keeps_its_finished_slides_and_resumes_after_them(
    model_ref, tmp_path, monkeypatch
) -> None:
    slides = [
        write_slide(tmp_path / "in" / f"s{i}.tif", tissue_slide(256, 384, seed=i)) for i in range(3)
    ]
    real_task = cohort.slide_task

    def stopped_at_the_second(path, stem, job):  # Ctrl-C while the second slide runs
        if stem == "s1":
            raise KeyboardInterrupt
        return real_task(path, stem, job)

    monkeypatch.setattr(cohort, "slide_task", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        _run(slides, model_ref, tmp_path / "out")
    assert [r["slide"] for r in _rows(tmp_path / "out" / "slides.csv")] == ["s0"]
    monkeypatch.setattr(cohort, "slide_task", real_task)
    resumed = _run(slides, model_ref, tmp_path / "out")
    assert resumed.skipped == [str(slides[0])]
    assert [r["slide"] for r in resumed.rows] == ["s1", "s2"]
    assert [r["slide"] for r in _rows(resumed.slides_csv)] == ["s0", "s1", "s2"]


def test_slides_of_one_name_run_separately_keep_separate_folders(model_ref, tmp_path) -> None:
    first = write_slide(tmp_path / "a" / "s1.tif", tissue_slide(256, 384, seed=1))
    second = write_slide(tmp_path / "b" / "s1.tif", tissue_slide(256, 384, seed=2))
    out = tmp_path / "out"
    _run([first], model_ref, out)
    _run([second], model_ref, out)
    rows = {r["path"]: r["slide"] for r in _rows(out / "slides.csv")}
    assert rows == {str(first): "s1", str(second): "s1-2"}
    assert result_meta(out / "slides" / "s1")["path"] == str(first)
    assert result_meta(out / "slides" / "s1-2")["path"] == str(second)


def test_a_slide_named_twice_runs_once(model_ref, tmp_path) -> None:
    slide = write_slide(tmp_path / "in" / "s0.tif", tissue_slide(256, 384))
    summary = _run([tmp_path / "in", slide], model_ref, tmp_path / "out")
    assert [r["slide"] for r in summary.rows] == ["s0"]
    assert [p.name for p in (tmp_path / "out" / "slides").iterdir()] == ["s0"]


def test_a_damaged_slides_csv_row_is_dropped_and_its_slide_runs_again(model_ref, tmp_path) -> None:
    slides = [
        write_slide(tmp_path / "in" / f"s{i}.tif", tissue_slide(256, 384, seed=i)) for i in range(2)
    ]
    out = tmp_path / "out"
    _run(slides, model_ref, out)
    lines = (out / "slides.csv").read_text().splitlines()
    cut = lines[2].split(",")[:2]  # s1's row cut short after its path, as by a full disk
    (out / "slides.csv").write_text("\n".join([*lines[:2], ",".join(cut), "garbage"]) + "\n")
    again = _run(slides, model_ref, out)
    assert again.skipped == [str(slides[0])] and [r["slide"] for r in again.rows] == ["s1"]
    assert [r["slide"] for r in _rows(out / "slides.csv")] == ["s0", "s1"]


def test_a_result_left_half_written_by_a_killed_run_is_removed_and_its_slide_rerun(
    model_ref, tmp_path
) -> None:
    import subprocess
    import sys

    slide = write_slide(tmp_path / "in" / "s0.tif", tissue_slide(256, 384))
    out = tmp_path / "out"
    _run([slide], model_ref, out)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    partial = out / "slides" / f"s0.tmp{int(gone.stdout)}"  # killed before its final rename
    (out / "slides" / "s0").rename(partial)
    (out / "slides" / "notes.tmpx").mkdir()  # not a partial's name: left alone
    again = _run([slide], model_ref, out)
    assert [r["slide"] for r in again.rows] == ["s0"]
    assert sorted(p.name for p in (out / "slides").iterdir()) == ["notes.tmpx", "s0"]


def test_a_mammogram_dicom_in_a_slide_folder_is_a_failures_row_and_the_slides_run(
    model_ref, tmp_path, dicom_factory
) -> None:
    import numpy as np

    slide = write_slide(tmp_path / "in" / "s0.tif", tissue_slide(256, 384))
    mammogram = dicom_factory("in/film.dcm", np.full((64, 48), 900, np.uint16))
    summary = _run([tmp_path / "in"], model_ref, tmp_path / "out")
    assert [r["path"] for r in _rows(summary.slides_csv)] == [str(slide)]
    failures = _rows(summary.failures_csv)
    assert [r["path"] for r in failures] == [str(mammogram)]
    assert "not a whole-slide image" in failures[0]["error"]


def _as_older_versions_wrote(out, typed: dict[str, str]) -> None:
    """Rewrite a run's records as versions before the result's resolved ``file`` wrote them:
    slides.csv's ``path`` and the result's ``path`` as typed (relative to where it started)."""
    import zarr

    rows = _rows(out / "slides.csv")
    for row in rows:
        row["path"] = typed[row["slide"]]
        attrs = zarr.open_group(str(out / "slides" / row["slide"] / "result.zarr"), mode="a").attrs
        attrs["meta"] = {"key": row["key"], "path": typed[row["slide"]]}
    with open(out / "slides.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_cohort_of_relative_paths_resumes_from_another_folder(
    model_ref, tmp_path, monkeypatch
) -> None:
    for i in range(2):
        write_slide(tmp_path / "in" / f"s{i}.tif", tissue_slide(256, 384, seed=i))
    monkeypatch.chdir(tmp_path)
    _run([Path("in")], model_ref, Path("out"))
    _as_older_versions_wrote(tmp_path / "out", {"s0": "in/s0.tif", "s1": "in/s1.tif"})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    resumed = _run([tmp_path / "in"], model_ref, tmp_path / "out")
    assert resumed.rows == [] and len(resumed.skipped) == 2
    assert sorted(p.name for p in (tmp_path / "out" / "slides").iterdir()) == ["s0", "s1"]
    assert [r["slide"] for r in _rows(tmp_path / "out" / "slides.csv")] == ["s0", "s1"]


def test_slides_csv_holds_absolute_paths_for_slides_given_relative(
    model_ref, tmp_path, monkeypatch
) -> None:
    slide = write_slide(tmp_path / "in" / "s0.tif", tissue_slide(256, 384))
    monkeypatch.chdir(tmp_path)
    summary = _run([Path("in") / "s0.tif"], model_ref, Path("out"))
    assert [r["path"] for r in _rows(summary.slides_csv)] == [str(slide)]


def _same_size_replacement(path: Path, seed: int) -> None:
    """Overwrite ``path`` with another slide of the same size, as a re-scan exported again."""
    before = path.stat().st_size
    write_slide(path, tissue_slide(256, 384, seed=seed), compression="none")
    assert path.stat().st_size == before


def test_a_slide_replaced_by_another_of_the_same_size_runs_again_and_is_reported(
    model_ref, tmp_path
) -> None:
    slides = [
        write_slide(
            tmp_path / "in" / f"s{i}.tif", tissue_slide(256, 384, seed=i), compression="none"
        )
        for i in range(2)
    ]
    out = tmp_path / "out"
    first = {r["slide"]: r for r in _run(slides, model_ref, out).rows}
    _same_size_replacement(slides[0], seed=7)
    again = _run(slides, model_ref, out)
    assert [r["slide"] for r in again.rows] == ["s0"] and again.changed == [str(slides[0])]
    assert again.skipped == [str(slides[1])]
    rows = {r["slide"]: r for r in _rows(out / "slides.csv")}
    assert rows["s0"]["key"] != first["s0"]["key"]
    assert rows["s0"]["mean_malignant"] != str(first["s0"]["mean_malignant"])
    assert rows["s1"]["key"] == first["s1"]["key"]
    assert result_meta(out / "slides" / "s0")["key"] == rows["s0"]["key"]


def test_predict_slides_says_which_slides_changed_and_ran_again(
    model_ref, tmp_path, capsys, caplog
) -> None:
    from napari_pathreview.cli import main

    slide = write_slide(tmp_path / "s0.tif", tissue_slide(256, 384), compression="none")
    argv = ["predict-slides", str(slide), "--model", model_ref, "--out", str(tmp_path / "out"),
            "--workers", "0", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    _same_size_replacement(slide, seed=7)
    capsys.readouterr()
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "1 slide(s) done, 0 skipped as finished" in said
    assert "1 of them changed since their earlier result" in said
    assert any(str(slide) in r.getMessage() and "changed" in r.getMessage() for r in caplog.records)


def _as_the_old_key_wrote(out: Path, job) -> None:
    """Rewrite a run's keys as versions before the slide state was in the key wrote them."""
    import zarr

    rows = _rows(out / "slides.csv")
    for row in rows:
        row["key"] = job.legacy_key(Path(row["path"]))
        attrs = zarr.open_group(str(out / "slides" / row["slide"] / "result.zarr"), mode="a").attrs
        meta = dict(attrs["meta"])
        del meta["slide_state"]
        attrs["meta"] = {**meta, "key": row["key"]}
    with open(out / "slides.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_row_of_the_old_key_is_kept_for_an_untouched_slide_and_rerun_for_a_rewritten_one(
    model_ref, tmp_path
) -> None:
    slides = [
        write_slide(
            tmp_path / "in" / f"s{i}.tif", tissue_slide(256, 384, seed=i), compression="none"
        )
        for i in range(2)
    ]
    out = tmp_path / "out"
    job = job_from_settings(model_ref, out, SlideSettings(batch_size=8), device="cpu")
    run_cohort(slides, job, workers=0, progress=False)
    _as_the_old_key_wrote(out, job)
    _same_size_replacement(slides[1], seed=7)  # after its result was written
    upgraded = run_cohort(slides, job, workers=0, progress=False)
    assert upgraded.skipped == [str(slides[0])] and upgraded.changed == [str(slides[1])]
    assert [r["slide"] for r in upgraded.rows] == ["s1"]
    rows = {r["slide"]: r for r in _rows(out / "slides.csv")}
    assert rows["s0"]["key"] == job.slide_key(slides[0])  # judged by the new key from now on
    assert result_meta(out / "slides" / "s0")["key"] == job.slide_key(slides[0])
    again = run_cohort(slides, job, workers=0, progress=False)
    assert again.rows == [] and len(again.skipped) == 2
