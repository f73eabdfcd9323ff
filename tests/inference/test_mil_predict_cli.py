"""`pathreview predict --cam patch_map|attention_map`: a lesion model's own maps, via the script."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from napari_pathreview.models import create_model


def _pathreview(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("pathreview", path=str(Path(sys.executable).parent)) or "pathreview"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=os.environ.copy())


def _lesion_ref(registry) -> str:
    torch.manual_seed(0)
    model = create_model("patch_mil", 2, encoder="test_resnet", patch_size=16, input_size=64)
    card = {
        "name": "lesion-cli",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "preprocess": {"pixel_size": 1.0, "pixel_unit": "um"},
    }
    return f"lesion-cli@{registry.register(model, card)}"


def test_predict_writes_a_lesion_models_patch_and_attention_maps(
    registry, rng, tissue_like, tmp_path
) -> None:
    ref = _lesion_ref(registry)
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), tissue_like(rng, 70, 90)[:, :, ::-1])
    for kind in ("patch_map", "attention_map"):
        out = tmp_path / kind
        done = _pathreview(
            "predict", str(image), "--model", ref, "--device", "cpu", "--cam", kind,
            "--out", str(out),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        [row] = list(csv.DictReader((out / "predictions.csv").open(newline="")))
        assert row["status"] == "ok"
        heat = np.load(out / f"img_{kind}.npy")
        assert heat.shape == (70, 90) and heat.min() >= 0.0 and heat.max() <= 1.0


def test_patch_map_of_an_ordinary_cnn_is_refused_before_any_work(binary_ref, tmp_path) -> None:
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    done = _pathreview(
        "predict", str(image), "--model", binary_ref, "--cam", "patch_map", "--out", str(tmp_path)
    )
    assert done.returncode != 0
    assert "not a lesion-aware patch MIL model" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "predictions.csv").exists()


def test_predict_tta_of_a_lesion_model_averages_its_four_flipped_views(
    registry, rng, tissue_like, tmp_path
) -> None:
    ref = _lesion_ref(registry)
    image = tissue_like(rng, 64, 64)[:, :, ::-1]
    views = {"id": image, "h": image[:, ::-1], "v": image[::-1], "hv": image[::-1, ::-1]}
    for name, pixels in views.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.ascontiguousarray(pixels))

    def probabilities(out: Path, *args: str) -> dict[str, np.ndarray]:
        done = _pathreview("predict", *args, "--model", ref, "--device", "cpu", "--out", str(out))
        assert done.returncode == 0, done.stderr
        rows = list(csv.DictReader((out / "predictions.csv").open(newline="")))
        return {
            Path(r["path"]).stem: np.array([float(r["p_benign"]), float(r["p_malignant"])])
            for r in rows
        }

    alone = probabilities(tmp_path / "alone", *(str(tmp_path / f"{n}.png") for n in views))
    merged = probabilities(tmp_path / "tta", str(tmp_path / "id.png"), "--tta", "flips")
    np.testing.assert_allclose(merged["id"], np.mean(list(alone.values()), axis=0), atol=1e-5)
    assert not np.allclose(alone["id"], alone["hv"], atol=1e-4)  # the views do differ


def test_explain_takes_a_lesion_models_patch_map_as_its_method(
    registry, rng, tissue_like, tmp_path
) -> None:
    """predict --cam and the Analyze dock offer patch_map; explain --method refused it as an
    unknown CAM method though it scores a lesion model's maps anyway."""
    from napari_pathreview.io import Roi, write_geojson_rois

    ref = _lesion_ref(registry)
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), tissue_like(rng, 64, 64)[:, :, ::-1])
    square = np.array([[8, 8], [8, 40], [40, 40], [40, 8]])
    roi = write_geojson_rois(tmp_path / "roi.geojson", [Roi(square, "rectangle")])
    scores = tmp_path / "scores.csv"
    done = _pathreview(
        "explain", str(image), "--model", ref, "--device", "cpu", "--method", "patch_map",
        "--roi", str(roi), "--out", str(scores),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(scores.open(newline="")))
    assert [r["method"] for r in rows] == ["patch_map", "attention_map"]
