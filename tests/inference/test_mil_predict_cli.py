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
