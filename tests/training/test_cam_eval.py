"""A run's CAM check (``eval.cam_iou``) counts the empty CAMs beside its mean IoU / Dice."""

from __future__ import annotations

from pathlib import Path

from napari_pathreview.training import run_recipe
from napari_pathreview.training.build import load_fold_model
from napari_pathreview.training.results import fold_dir, read_fold


def _mias_recipe(shared_data: Path) -> dict:
    """resnet18 on 96-px MIAS films (a 3×3 last feature map) for one epoch, its Grad-CAM
    scored against the ROI circles."""
    return {
        "name": "tiny_cam",
        "seed": 0,
        "modality": "mammogram",
        "data": {
            "source": "mias",
            "root": str(shared_data / "mias"),
            "task": "mammogram",
            "image_size": 96,
            "resize": 104,
        },
        "model": {"architecture": "resnet18"},
        "optim": {"batch_size": 16},
        "schedule": {"name": "none"},
        "phases": [{"name": "all", "epochs": 1}],
        "eval": {"bootstrap": 20, "cam_iou": True, "cam_methods": ["gradcam"], "cam_images": 3},
        "register": {"enabled": False},
    }


def _blind_fold_models(run_dir: Path) -> None:
    """Zero every fold model's classifier: its Grad-CAM comes out constant (empty)."""
    import torch
    from safetensors.torch import save_file

    index = 0
    while (done := read_fold(run_dir, index)) is not None:
        model = load_fold_model(run_dir, index)
        with torch.no_grad():
            model.get_classifier().weight.zero_()
        save_file(model.state_dict(), str(fold_dir(run_dir, index) / done.weights))
        index += 1


def test_the_cam_check_counts_empty_cams_beside_its_mean_iou(shared_data, tmp_path, caplog):
    recipe = _mias_recipe(shared_data)
    first = run_recipe(recipe, out_dir=tmp_path)
    scored = first.metrics["cam_iou"]
    assert scored["methods"]["gradcam"]["n_cam_empty"] == 0
    _blind_fold_models(first.run_dir)
    again = run_recipe(recipe, resume=first.run_dir)  # finished folds: scored again
    blind = again.metrics["cam_iou"]["methods"]["gradcam"]
    assert blind["iou"] == 0.0 and blind["n_cam_empty"] == again.metrics["cam_iou"]["images"]
    assert "CAM gradcam is empty" in caplog.text
