"""Bad input to ``stain fit|apply`` and ``qc``: named errors, and batches that survive a bad file.

The console script runs in a subprocess; each case checks the exit status, the file named
on stderr (or in the CSV's error column) and that no traceback is printed.
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

CLI = [sys.executable, "-m", "napari_pathreview.cli"]


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two small tissue-coloured PNGs and one file that only claims to be a PNG."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "c.png"):
        pixels = np.clip(rng.normal((160, 100, 150), 30, (48, 48, 3)), 0, 220).astype(np.uint8)
        cv2.imwrite(str(images / name), pixels)
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(100)))
    return images


def test_qc_records_the_bad_file_and_finishes_the_folder(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "qc.csv"
    result = _run("qc", folder, "--out", out)
    assert result.returncode == 1
    assert "1 of 3 image(s) failed" in result.stderr and "Traceback" not in result.stderr
    with out.open(newline="") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    assert [rows[n]["status"] for n in ("a.png", "b.png", "c.png")] == ["ok", "error", "ok"]
    assert "b.png" in rows["b.png"]["error"]
    assert rows["a.png"]["blur_score"] and rows["c.png"]["tissue_fraction"]


@pytest.mark.parametrize("target_kind", ["png", "missing", "list-json"])
def test_stain_apply_refuses_a_bad_target_naming_it(folder, tmp_path, target_kind) -> None:
    target = tmp_path / f"target.{target_kind}"
    if target_kind == "png":
        target = folder / "a.png"  # an image given where the fitted JSON belongs
    elif target_kind == "list-json":
        target.write_text("[1, 2, 3]")
    result = _run("stain", "apply", "--target", target, folder / "a.png", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert target.name in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("method", ["macenko", "vahadane"])
def test_stain_apply_refuses_a_target_with_a_zero_stain_vector(folder, tmp_path, method) -> None:
    """A hand-edited target whose eosin row is all zeros used to be accepted, and every image
    came out pure white with the status 'normalised'."""
    target = tmp_path / "target.json"
    matrix = [[0.65, 0.70, 0.29], [0.0, 0.0, 0.0]]
    target.write_text(json.dumps({"method": method, "version": 1, "stain_matrix": matrix,
                                  "max_concentrations": [1.9, 1.0]}))  # fmt: skip
    out = tmp_path / "o"
    result = _run("stain", "apply", "--target", target, folder / "a.png", "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{target} is not a stain target" in result.stderr and "non-zero" in result.stderr
    assert not out.exists()


def test_stain_apply_goes_on_after_a_bad_image(folder, tmp_path) -> None:
    target = tmp_path / "target.json"
    fitted = _run("stain", "fit", "--method", "reinhard", "--images", folder / "a.png",
                  "--out", target)  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    out = tmp_path / "normalised"
    result = _run("stain", "apply", "--target", target, folder, "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert "b.png" in result.stdout and "error" in result.stdout


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_stain_fit_refuses_an_out_it_cannot_write(folder, tmp_path, where) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker / "t.json" if where == "under-a-file" else tmp_path
    result = _run("stain", "fit", "--method", "reinhard", "--images", folder / "a.png",
                  "--out", out)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(out if where == "file" else blocker) in result.stderr


def _same_name_in_two_folders(shared_data: Path, root: Path) -> Path:
    """``root/a/x.png`` and ``root/b/x.png``: two different real BreaKHis images, one name."""
    sources = sorted((shared_data / "breakhis").glob("*.png"))
    for sub, source in zip("ab", (sources[0], sources[-1]), strict=True):
        (root / sub).mkdir(parents=True)
        (root / sub / "x.png").write_bytes(source.read_bytes())
    return root


def test_stain_apply_keeps_same_named_images_of_subfolders_apart(shared_data, tmp_path) -> None:
    images = _same_name_in_two_folders(shared_data, tmp_path / "images")
    target = tmp_path / "preset.json"
    fitted = _run("stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", target)
    assert fitted.returncode == 0, fitted.stderr
    out = tmp_path / "normalised"
    result = _run("stain", "apply", "--target", target, images, "--out", out)
    assert result.returncode == 0, result.stderr
    written = {sub: cv2.imread(str(out / sub / "x.png")) for sub in "ab"}
    assert all(w is not None and w.shape == (460, 700, 3) for w in written.values())
    assert not np.array_equal(written["a"], written["b"])


def test_stain_apply_refuses_two_inputs_for_one_output(shared_data, tmp_path) -> None:
    images = _same_name_in_two_folders(shared_data, tmp_path / "images")
    target = tmp_path / "preset.json"
    _run("stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", target)
    out = tmp_path / "normalised"
    result = _run("stain", "apply", "--target", target, images / "a" / "x.png",
                  images / "b" / "x.png", "--out", out)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(images / "a" / "x.png") in result.stderr
    assert str(images / "b" / "x.png") in result.stderr
    assert not out.exists()


def test_stain_apply_refuses_a_cielab_reinhard_target(folder, tmp_path) -> None:
    target = tmp_path / "skimage_reinhard.json"  # CIELAB statistics, as other tools write them
    target.write_text('{"method": "reinhard", "means": [65.0, 20.0, -15.0], "stds": [15, 8, 6]}')
    out = tmp_path / "o"
    result = _run("stain", "apply", "--target", target, folder / "a.png", "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert target.name in result.stderr and "opencv_lab8" in result.stderr
    assert not out.exists()


def _preset_target(tmp_path: Path) -> Path:
    target = tmp_path / "preset.json"
    fitted = _run("stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", target)
    assert fitted.returncode == 0, fitted.stderr
    return target


def test_stain_apply_rerun_into_a_folder_inside_the_input_leaves_its_outputs_alone(
    folder, tmp_path
) -> None:
    (folder / "b.png").unlink()  # two readable images
    target, out = _preset_target(tmp_path), folder / "normalised"
    runs = [_run("stain", "apply", "--target", target, folder, "--out", out) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr
    inputs = [line.split("\t")[0] for line in runs[1].stdout.splitlines()[1:]]
    assert inputs == [str(folder / "a.png"), str(folder / "c.png")]
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert written == ["a.png", "c.png", "normalised/a.png", "normalised/c.png"]
    assert runs[1].stderr == runs[0].stderr  # nothing new to read on the rerun


def test_stain_apply_refuses_the_input_folder_as_out_and_keeps_the_originals(
    folder, tmp_path
) -> None:
    before = (folder / "a.png").read_bytes()
    result = _run("stain", "apply", "--target", _preset_target(tmp_path), folder, "--out", folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--out {folder}" in result.stderr
    assert (folder / "a.png").read_bytes() == before


def test_stain_apply_refuses_to_write_an_image_over_itself(folder, tmp_path) -> None:
    before = (folder / "a.png").read_bytes()
    target = _preset_target(tmp_path)
    result = _run("stain", "apply", "--target", target, folder / "a.png", "--out", folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(folder / "a.png") in result.stderr
    assert (folder / "a.png").read_bytes() == before


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--min-tissue", "1.5", "min_tissue_fraction"),
        ("--max-pen", "-0.1", "max_pen_fraction"),
        ("--max-saturation", "2", "max_saturation_fraction"),
        ("--blur-threshold", "nan", "blur_threshold"),
        ("--background-threshold", "300", "background_threshold"),
        ("--washed-out-level", "-1", "washed_out_level"),
    ],
)
def test_qc_names_the_flag_the_user_typed_for_a_bad_threshold(folder, tmp_path, flag, value, field):
    out = tmp_path / "qc.csv"
    result = _run("qc", folder, "--out", out, flag, value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{flag} must be" in result.stderr and value in result.stderr
    assert field not in result.stderr
    assert not out.exists()
