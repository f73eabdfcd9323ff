"""`pathreview stain fit|apply` and `pathreview qc`, run in-process on real images."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from napari_pathreview.cli import main


def _copy_some(shared_data, dest, n=3):
    dest.mkdir()
    for path in sorted((shared_data / "breakhis").glob("*.png"))[:n]:
        shutil.copy(path, dest / path.name)
    return dest


def test_stain_fit_writes_a_target_and_apply_normalises(shared_data, tmp_path):
    images = _copy_some(shared_data, tmp_path / "imgs")
    target = tmp_path / "target.json"
    assert (
        main(["stain", "fit", "--method", "macenko", "--images", str(images), "--out", str(target)])
        == 0
    )
    state = json.loads(target.read_text())
    assert state["method"] == "macenko" and np.array(state["stain_matrix"]).shape == (2, 3)
    out = tmp_path / "out"
    source = shared_data / "he_reference" / "HEnorm_python_example1.png"
    assert main(["stain", "apply", "--target", str(target), str(source), "--out", str(out)]) == 0
    written = cv2.imread(str(out / "HEnorm_python_example1.png"))
    assert written is not None and written.shape == (1024, 1024, 3)
    assert not np.array_equal(written, cv2.imread(str(source)))


def test_stain_fit_preset_writes_seed_statistics(tmp_path):
    target = tmp_path / "r.json"
    assert (
        main(["stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", str(target)])
        == 0
    )
    assert json.loads(target.read_text())["means"] == [180.8, 148.6, 116.5]


def test_stain_fit_on_missing_folder_exits_2(tmp_path):
    code = main(
        [
            "stain",
            "fit",
            "--method",
            "reinhard",
            "--images",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "t.json"),
        ]
    )
    assert code == 2


def test_stain_fit_on_blank_images_exits_2(tmp_path):
    folder = tmp_path / "blank"
    folder.mkdir()
    cv2.imwrite(str(folder / "white.png"), np.full((32, 32, 3), 255, np.uint8))
    assert (
        main(
            [
                "stain",
                "fit",
                "--method",
                "vahadane",
                "--images",
                str(folder),
                "--out",
                str(tmp_path / "t.json"),
            ]
        )
        == 2
    )


def test_apply_with_corrupt_target_exits_2(tmp_path, shared_data):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    image = shared_data / "he_reference" / "HEnorm_python_example2.png"
    assert (
        main(["stain", "apply", "--target", str(bad), str(image), "--out", str(tmp_path / "o")])
        == 2
    )


def test_qc_writes_one_row_per_image_with_reasons(shared_data, tmp_path):
    images = _copy_some(shared_data, tmp_path / "imgs", n=2)
    cv2.imwrite(str(images / "blank.png"), np.full((64, 64, 3), 250, np.uint8))
    out = tmp_path / "qc.csv"
    assert main(["qc", str(images), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    assert set(rows[0]) >= {
        "path",
        "blur_score",
        "tissue_fraction",
        "pen_fraction",
        "saturation_fraction",
        "dark_level",
        "passed",
        "reasons",
    }
    blank = next(r for r in rows if r["path"].endswith("blank.png"))
    assert blank["passed"] == "False" and "little tissue" in blank["reasons"]


def test_qc_thresholds_come_from_flags(shared_data, tmp_path):
    images = _copy_some(shared_data, tmp_path / "imgs", n=2)
    out = tmp_path / "qc.csv"
    assert (
        main(["qc", str(images), "--out", str(out), "--min-tissue", "1.0", "--blur-threshold", "0"])
        == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert all(r["passed"] == "False" and "blurry" not in r["reasons"] for r in rows)


def test_qc_skips_a_mammogram_instead_of_failing_it_on_histology_rules(shared_data, tmp_path):
    images = _copy_some(shared_data, tmp_path / "imgs", n=1)
    shutil.copy(shared_data / "mias" / "mdb028.pgm", images / "mdb028.pgm")
    out = tmp_path / "qc.csv"
    assert main(["qc", str(images), "--out", str(out)]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    film = rows["mdb028.pgm"]
    assert film["status"] == "skipped" and film["passed"] == ""
    assert "mammogram" in film["reasons"] and "pen" not in film["reasons"]
    histology = next(r for name, r in rows.items() if name != "mdb028.pgm")
    assert histology["status"] == "ok" and histology["passed"] in ("True", "False")


def _with_a_film(shared_data, folder):
    images = _copy_some(shared_data, folder, n=2)
    shutil.copy(shared_data / "mias" / "mdb028.pgm", images / "mdb028.pgm")
    return images


def test_stain_apply_skips_a_mammogram_instead_of_normalising_it_with_he_rules(
    shared_data, tmp_path, capsys
):
    images = _with_a_film(shared_data, tmp_path / "imgs")
    target, out = tmp_path / "target.json", tmp_path / "out"
    fit = ["stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", str(target)]
    assert main(fit) == 0
    capsys.readouterr()
    assert main(["stain", "apply", "--target", str(target), str(images), "--out", str(out)]) == 0
    rows = {Path(line.split("\t")[0]).name: line for line in capsys.readouterr().out.splitlines()}
    assert "skipped: mammogram image: stain normalisation is for H&E" in rows["mdb028.pgm"]
    assert not (out / "mdb028.png").exists()
    assert len(list(out.glob("*.png"))) == 2  # the histology images are normalised


def test_stain_fit_leaves_a_mammogram_out_of_the_target(shared_data, tmp_path, capsys):
    with_film, without = tmp_path / "with.json", tmp_path / "without.json"
    images = _with_a_film(shared_data, tmp_path / "imgs")
    only_he = _copy_some(shared_data, tmp_path / "he", n=2)
    for folder, out in ((images, with_film), (only_he, without)):
        argv = ["stain", "fit", "--method", "reinhard", "--images", str(folder), "--out", str(out)]
        assert main(argv) == 0
    assert json.loads(with_film.read_text()) == json.loads(without.read_text())
    err = capsys.readouterr().err
    assert "warning: skipped" in err and "mdb028.pgm (mammogram image" in err


def test_stain_fit_on_mammograms_only_is_refused_saying_why(shared_data, tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(shared_data / "mias" / "mdb028.pgm", films / "mdb028.pgm")
    out = tmp_path / "t.json"
    argv = ["stain", "fit", "--method", "macenko", "--images", str(films), "--out", str(out)]
    assert main(argv) == 2
    assert "none of the 1 image(s)" in capsys.readouterr().err
    assert not out.exists()


def test_stain_fit_onto_an_existing_target_is_refused_naming_it_and_force(tmp_path, capsys):
    target = tmp_path / "target.json"
    target.write_text('{"method": "macenko", "fitted": "on the reference tiles"}')
    fit = ["stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", str(target)]
    assert main(fit) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(target) in err and "--force" in err
    assert "overwrite=True" not in err and "Traceback" not in err
    assert target.read_text() == '{"method": "macenko", "fitted": "on the reference tiles"}'


def test_stain_fit_with_force_replaces_an_existing_target(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("{}")
    fit = ["stain", "fit", "--method", "reinhard", "--preset", "breakhis", "--out", str(target)]
    assert main([*fit, "--force"]) == 0
    assert json.loads(target.read_text())["means"] == [180.8, 148.6, 116.5]
