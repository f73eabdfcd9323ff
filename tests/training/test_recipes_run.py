"""Every shipped recipe runs as written, shrunk by --set overrides (epochs, image size, subset).

These build the full-size seed architectures, so they are marked slow (CI still runs them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_pathreview.registry import ModelRegistry
from napari_pathreview.training import run_recipe

RECIPES = Path(__file__).resolve().parents[2] / "training"
SMALL = [
    "phases.*.epochs=1",
    "data.image_size=64",
    "data.resize=72",
    "optim.batch_size=8",
    "eval.bootstrap=20",
]
HEAD_ONLY = "phases=[{name: head, epochs: 1, train: [fusion, head]}]"

CASES = {
    "seed000_cspresnet_binary": ["data.subset=20"],
    "seed000_cspresnet_subtype": ["data.subset=24", "eval.tta=flips"],
    "seed002_ssresnext_per_magnification": ["data.subset=20", "split.folds=2"],
    "seed003_resnet50_a": ["data.subset=20", "split.folds=2"],
    "seed003_resnet50_b": ["data.subset=20", "split.folds=2"],
    "seed003_resnet50_c": ["data.subset=20", "split.folds=2"],
    "seed004_hmcnet_mias": [
        "data.subset=24",
        "split.folds=2",
        "eval.cam_images=2",
        "eval.cam_methods=[gradcam]",
    ],
    "mias_5fold_mobilenetv3": ["data.subset=30", "split.folds=2"],
}
DATA = {"seed004_hmcnet_mias": "mias_full", "mias_5fold_mobilenetv3": "mias_full"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_recipe_runs_shrunk(name, shared_data, tmp_path):
    root = shared_data / DATA.get(name, "breakhis")
    overrides = [*SMALL, *CASES[name], f"data.root={root}"]
    result = run_recipe(RECIPES / f"{name}.yaml", overrides, out_dir=tmp_path)
    assert (result.run_dir / "metrics.json").is_file()
    assert result.metrics["leaky"] is False
    assert result.registered is not None
    card = ModelRegistry().card(*result.registered.split("@"))
    assert card.tta == result.metrics["tta"]  # the views its threshold was fitted under
    if name == "seed004_hmcnet_mias":
        assert "gradcam" in result.metrics["cam_iou"]["methods"]


@pytest.mark.slow
def test_seed001_hybrid_runs_its_head_phase_at_224_px(shared_data, tmp_path):
    """The ViT-B/16 half fixes the input at 224 px, so this shrinks by phase and subset instead."""
    overrides = [
        HEAD_ONLY,
        "data.subset=14",
        "optim.batch_size=8",
        "eval.bootstrap=20",
        "eval.tta=none",
        f"data.root={shared_data / 'breakhis'}",
    ]
    result = run_recipe(RECIPES / "seed001_hybrid.yaml", overrides, out_dir=tmp_path)
    card_target = result.metrics["n_images"]
    assert card_target <= 14 and result.registered is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo_histology", "demo_mammogram"])
def test_demo_recipe_registers_a_demo_model(name, sample_data, tmp_path):
    assert (sample_data / "demo").is_dir(), (
        "sample_data/demo is committed; rebuild it with make_demo_sets.py"
    )
    result = run_recipe(
        RECIPES / f"{name}.yaml", ["phases.*.epochs=1", "eval.bootstrap=20"], out_dir=tmp_path
    )
    card = ModelRegistry().card(*result.registered.split("@"))
    assert card.description.startswith("demo model — trained on ")
    assert "not for diagnosis" in card.description
    expected = {"demo_histology": (0.5, "um"), "demo_mammogram": (1.0, "mm")}[name]
    assert (card.preprocess.pixel_size, card.preprocess.pixel_unit) == expected
