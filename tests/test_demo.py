"""`pathreview demo`: trains the demo models with the real training code, then writes results."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from napari_pathreview.cli import main
from napari_pathreview.demo import ensure_demo_models, find_demo_models

# The real demo recipes, shrunk for a test: one epoch, small images, few bootstrap samples.
SHRINK = [
    "--epochs",
    "1",
    "--set",
    "data.image_size=96",
    "--set",
    "data.resize=104",
    "--set",
    "eval.bootstrap=20",
]


def test_headless_demo_trains_registers_and_writes_real_outputs(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out), *SHRINK]) == 0

    models = find_demo_models()
    assert set(models) == {"histology", "mammogram"}
    from napari_pathreview.registry import ModelRegistry, parse_model_ref

    for ref in models.values():
        card = ModelRegistry().card(*parse_model_ref(ref))
        assert "demo model" in card.description and card.weights_sha256

    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [Path(r["path"]).name for r in rows] == [
        "SOB_M_DC-14-2523-40-010.png",
        "SOB_B_F-14-9133-40-001.png",
        "mdb028.pgm",
    ]
    for row in rows:
        probs = {k[2:]: float(v) for k, v in row.items() if k.startswith("p_") and v}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert row["label"] in probs
        png = Image.open(out / row["cam_png"])
        assert png.size[0] > 100 and png.mode == "RGB"
    mammogram = np.asarray(Image.open(out / "mdb028_cam.png"))
    assert mammogram.shape[:2] == (1024, 1024) and mammogram.std() > 0

    scores = json.loads((out / "iou.json").read_text())
    assert [s["image"] for s in scores] == ["mdb028.pgm"]
    assert all(math.isfinite(s["iou"]) and 0 <= s["iou"] <= 1 for s in scores)
    assert list(csv.DictReader((out / "iou.csv").open()))[0]["method"] == "gradcam"

    _assert_slide_analysed_at_the_models_resolution(out, models["histology"])
    assert ensure_demo_models() == models  # registered once: no second training


def _assert_slide_analysed_at_the_models_resolution(out: Path, histology_ref: str) -> None:
    """The sample pyramid, given its µm/px, is tiled at the demo model's own resolution."""
    from napari_pathreview.registry import ModelRegistry, parse_model_ref

    card = ModelRegistry().card(*parse_model_ref(histology_ref))
    summary = json.loads((out / "slide.json").read_text())
    assert summary["mode"] == "matched" and summary["slide_um_per_px"] == 0.25
    assert summary["model_um_per_px"] == pytest.approx(card.preprocess.um_per_px)
    assert summary["read_level"] == 1  # 0.5 µm/px: the pyramid's 512-px level, not a preview
    tiles = list(csv.DictReader((out / "slide_tiles.csv").open()))
    assert len(tiles) == summary["tiles"] > 0
    assert all(0.0 <= float(t["p_malignant"]) <= 1.0 for t in tiles)
    heat = np.asarray(Image.open(out / "slide_heatmap.png"))
    assert heat.shape == (1024, 1024, 3) and heat.std() > 0
    assert np.asarray(Image.open(out / "slide_cam.png")).shape == (1024, 1024, 3)


def test_demo_refuses_zero_epochs(capsys: Any) -> None:
    assert main(["demo", "--headless", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


def _register_blind_demo_models() -> None:
    """A demo model per modality whose classifier weights are all zero: its Grad-CAM is empty."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    for modality in ("histology", "mammogram"):
        model = create_model("resnet18", 2).eval()
        with torch.no_grad():
            model.get_classifier().weight.zero_()
        card = {
            "name": f"blind-{modality}",
            "architecture": "resnet18",
            "task": "binary",
            "classes": ["benign", "malignant"],
            "modality": modality,
            "input_size": [3, 64, 64],
            "description": "demo model with a zeroed classifier",
        }
        if modality == "histology":  # the demo slide is analysed at the model's resolution
            card["preprocess"] = {"input_size": [3, 64, 64], "pixel_size": 1.0, "pixel_unit": "um"}
        ModelRegistry().register(model, card)


def test_headless_demo_flags_an_empty_cam_instead_of_a_silent_zero(
    tmp_path: Path, capsys: Any
) -> None:
    _register_blind_demo_models()
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out), "--device", "cpu"]) == 0
    assert [s["cam_empty"] for s in json.loads((out / "iou.json").read_text())] == [True]
    assert [r["cam_empty"] for r in csv.DictReader((out / "iou.csv").open())] == ["True"]
    err = capsys.readouterr().err
    assert "pathreview demo: warning: gradcam CAM is empty" in err and "mdb028.pgm" in err
