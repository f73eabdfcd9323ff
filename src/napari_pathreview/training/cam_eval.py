"""Seed 004's explanation check: CAM IoU against the MIAS ROI circles after training.

Runs the explanation engine (``napari_pathreview.explain``) on the registered fold's test
images that carry ROIs, at the resolution the model saw, with the ROIs mapped into it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from napari_pathreview import explain
from napari_pathreview.explain.evaluate import empty_maps_note, scored_map
from napari_pathreview.training.build import load_fold_model
from napari_pathreview.training.datasets import ImageDataset, eval_transform
from napari_pathreview.training.preparation import stain_images
from napari_pathreview.training.results import FoldResult

log = logging.getLogger(__name__)


def _roi_objects(rois, top: int, left: int) -> list[SimpleNamespace]:
    """ROI circles (row, col, radius) of a cached canvas, shifted into its centre window."""
    return [SimpleNamespace(row=r - top, col=c - left, radius=rad) for r, c, rad in rois]


def cam_iou_for_fold(recipe, data, fold: FoldResult, run_dir: Path) -> dict:
    """Mean IoU / Dice / pointing game per CAM method over the fold's test images with ROIs.

    The images are fed as in the fold's evaluation: its spec's window, its stain target.
    ``n_cam_empty`` counts the images whose CAM came out constant (``cam_is_empty``): they
    score 0, as seed 004 counts them, and are counted so a low mean can be read.
    """
    import torch

    index = fold.fold
    split = data.plan.folds[index]
    chosen = [i for i in (split.test or split.val) if data.prepared[i].rois]
    chosen = chosen[: recipe.eval.cam_images]
    if not chosen:
        return {"skipped": "no test image of the registered fold has an ROI"}
    spec = fold.preprocess
    model = load_fold_model(run_dir, index)
    images = stain_images([data.prepared[i] for i in chosen], spec.stain_target)
    dataset = ImageDataset(images, data.labels[chosen], None, eval_transform(spec))
    batch = torch.stack([dataset[i][0] for i in range(len(dataset))])
    top, left, height, width = spec.input_window
    masks = [
        explain.mask_from_mias(
            _roi_objects(data.prepared[i].rois, top, left),
            (height, width),
            source_shape=(height, width),
        )
        for i in chosen
    ]
    result = {"images": len(chosen), "fold": index, "threshold": 0.5, "methods": {}}
    for method in recipe.eval.cam_methods:
        cams = explain.compute_cam(model, batch, method)
        scores = [scored_map(c, m, 0.5) for c, m in zip(cams, masks, strict=True)]
        empty = sum(s["cam_empty"] for s in scores)
        result["methods"][method] = {
            "iou": float(np.mean([s["iou"] for s in scores])),
            "dice": float(np.mean([s["dice"] for s in scores])),
            "pointing_game": float(np.mean([s["pointing"] for s in scores])),
            "n_cam_empty": int(empty),
        }
        iou = result["methods"][method]["iou"]
        log.info("CAM %s: IoU %.3f on %d images", method, iou, len(chosen))
        note = empty_maps_note(f"CAM {method}", empty, len(chosen))
        if note is not None:
            log.warning(note)
    return result
