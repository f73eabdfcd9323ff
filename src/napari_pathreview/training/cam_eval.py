"""Seed 004's explanation check: CAM IoU against the MIAS ROI circles after training.

Runs the explanation engine (``napari_pathreview.explain``) on the registered fold's test
images that carry ROIs, at the resolution the model saw, with the ROIs mapped into it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np

log = logging.getLogger(__name__)


def _roi_objects(rois, offset: int) -> list[SimpleNamespace]:
    """ROI circles (row, col, radius) of a prepared image, shifted into its centre crop."""
    return [SimpleNamespace(row=r - offset, col=c - offset, radius=rad) for r, c, rad in rois]


def cam_iou_for_fold(recipe, data, index: int, weights: Path, explain) -> dict:
    """Mean IoU / Dice / pointing game per CAM method over test images with ROIs."""
    import torch
    from safetensors.torch import load_file

    from napari_pathreview.training.datasets import ImageDataset, build_transform
    from napari_pathreview.training.run import build_model

    fold = data.plan.folds[index]
    chosen = [i for i in (fold.test or fold.val) if data.prepared[i].rois][: recipe.eval.cam_images]
    if not chosen:
        return {"skipped": "no test image of the registered fold has an ROI"}
    model = build_model(recipe, len(data.classes))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    spec = model.spec
    transform = build_transform(recipe.augment, recipe.data.image_size, spec.mean, spec.std, False)
    dataset = ImageDataset([data.prepared[i] for i in chosen], data.labels[chosen], None, transform)
    batch = torch.stack([dataset[i][0] for i in range(len(dataset))])
    size = recipe.data.image_size
    offset = (data.prepared[chosen[0]].pixels.shape[0] - size) // 2
    masks = [
        explain.mask_from_mias(
            _roi_objects(data.prepared[i].rois, offset), (size, size), source_shape=(size, size)
        )
        for i in chosen
    ]
    result = {"images": len(chosen), "fold": index, "threshold": 0.5, "methods": {}}
    for method in recipe.eval.cam_methods:
        cams = explain.compute_cam(model, batch, method)
        iou = [explain.roi_iou(cam, mask, 0.5) for cam, mask in zip(cams, masks, strict=True)]
        dice = [explain.roi_dice(cam, mask, 0.5) for cam, mask in zip(cams, masks, strict=True)]
        hits = [explain.pointing_game(cam, mask) for cam, mask in zip(cams, masks, strict=True)]
        result["methods"][method] = {
            "iou": float(np.mean(iou)),
            "dice": float(np.mean(dice)),
            "pointing_game": float(np.mean(hits)),
        }
        log.info("CAM %s: IoU %.3f on %d images", method, np.mean(iou), len(chosen))
    return result
