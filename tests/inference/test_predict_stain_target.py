"""`pathreview predict --stain-target FILE`: a fitted stain target, via the console script."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_pathreview.stain import get_normalizer

REFERENCE = (
    Path(__file__).resolve().parents[2] / "sample_data/he_reference/HEnorm_python_example1.png"
)


def _pathreview(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("pathreview", path=str(Path(sys.executable).parent)) or "pathreview"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=os.environ.copy())


def _target(path: Path, method: str) -> Path:
    rgb = cv2.imread(str(REFERENCE))[:, :, ::-1]
    path.write_text(json.dumps(get_normalizer(method).fit(rgb).to_dict()))
    return path


def test_predict_uses_a_macenko_target_from_a_file(binary_ref, rng, tissue_like, tmp_path) -> None:
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), tissue_like(rng, 70, 90)[:, :, ::-1])
    target = _target(tmp_path / "macenko.json", "macenko")
    out = tmp_path / "out"
    done = _pathreview(
        "predict", str(image), "--model", binary_ref, "--device", "cpu",
        "--stain-target", str(target), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = list(csv.DictReader((out / "predictions.csv").open(newline="")))
    assert row["stain"] == "macenko"


def test_a_bad_stain_target_is_named_without_a_traceback(binary_ref, tmp_path) -> None:
    bad = tmp_path / "target.json"
    bad.write_text(json.dumps({"method": "macenko"}))
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    done = _pathreview("predict", str(image), "--model", binary_ref, "--stain-target", str(bad))
    assert done.returncode != 0
    assert "target.json" in done.stderr and "Traceback" not in done.stderr


def test_a_method_the_card_has_no_target_for_names_the_stain_target_flag(
    binary_ref, tmp_path, capsys
) -> None:
    from napari_pathreview.cli import main

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    out = tmp_path / "out"
    argv = ["predict", str(image), "--model", binary_ref, "--stain", "macenko", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'macenko' needs a fitted target" in err and "--stain-target FILE.json" in err
    assert "pathreview stain fit --method macenko" in err
    assert not out.exists()  # refused before the --out folder is made


def test_from_python_a_method_the_card_has_no_target_for_names_the_stain_argument(
    binary_ref,
) -> None:
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.inference import Predictor

    with pytest.raises(InvalidInputError) as refused:
        Predictor.from_registry(binary_ref, device="cpu", stain="macenko")
    message = str(refused.value)
    assert "'macenko' needs a fitted target" in message
    assert "stain=load_target('FILE.json')" in message and "leave out stain " in message
    assert "--stain" not in message.replace("pathreview stain fit --method", "")


def test_explain_names_the_stain_flags_when_the_card_has_no_target_for_the_method(
    binary_ref, tmp_path, capsys
) -> None:
    from napari_pathreview.cli import main

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    roi = tmp_path / "roi.geojson"
    square = [[[5, 5], [30, 5], [30, 30], [5, 30], [5, 5]]]
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": square},
    }
    roi.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    argv = ["explain", str(image), "--model", binary_ref, "--stain", "macenko", "--roi", str(roi)]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--stain-target FILE.json" in err and "leave out --stain " in err
    assert "stain=" not in err and "Traceback" not in err


def test_a_bad_stain_target_is_refused_before_the_out_folder_is_made(
    binary_ref, tmp_path, capsys
) -> None:
    from napari_pathreview.cli import main

    bad = tmp_path / "target.json"
    bad.write_text("{not json")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    out = tmp_path / "out"
    argv = ["predict", str(image), "--model", binary_ref, "--stain-target", str(bad)]
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 2
    assert "--stain-target" in capsys.readouterr().err
    assert not out.exists()


def test_a_stain_flag_contradicting_the_target_is_refused_before_the_out_folder_is_made(
    binary_ref, tmp_path, capsys
) -> None:
    from napari_pathreview.cli import main

    target = _target(tmp_path / "macenko.json", "macenko")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    out = tmp_path / "out"
    argv = ["predict", str(image), "--model", binary_ref, "--stain-target", str(target)]
    assert main([*argv, "--stain", "reinhard", "--out", str(out), "--device", "cpu"]) == 2
    assert "drop --stain" in capsys.readouterr().err
    assert not out.exists()
