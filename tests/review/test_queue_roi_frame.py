"""The roi_disagreement queue scores a reviewer's ROI where it was drawn, slides included."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathreview.inference.preprocess import decode
from napari_pathreview.io import write_pyramidal_tiff
from napari_pathreview.review.ordering import reviewer_roi_mask


def test_a_full_resolution_roi_marks_the_lesion_on_a_slide_decoded_at_a_coarse_level(
    tmp_path: Path,
) -> None:
    image = np.full((1024, 768, 3), 230, np.uint8)
    image[400:600, 300:500] = (120, 40, 160)  # the lesion: level-0 rows 400-600, cols 300-500
    path = write_pyramidal_tiff(image, tmp_path / "slide.tif", n_levels=3, compression="deflate")
    ring = [[300, 400], [500, 400], [500, 600], [300, 600], [300, 400]]  # review store: [x, y]
    roi = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}
    decoded = decode(path, min_side=128)  # the whole-image preview: a coarse level
    assert decoded.rgb.shape[:2] != (1024, 768)
    mask = reviewer_roi_mask(decoded, roi, "slide.tif")
    lesion = decoded.rgb[..., 1] < 100
    assert (lesion & mask).sum() / (lesion | mask).sum() > 0.9


def test_roi_disagreement_with_a_one_by_one_cam_layer_is_refused_before_any_image(
    tmp_path: Path,
) -> None:
    """It used to score every ROI image 1 − IoU of a flat Grad-CAM: 1.0, an order of ties."""
    import pytest
    import torch

    from napari_pathreview.explain.cam_grid import CamResolutionError
    from napari_pathreview.inference import Predictor
    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry
    from napari_pathreview.review.ordering import order_images

    torch.manual_seed(0)
    card = {"name": "coarse", "task": "binary", "classes": ["benign", "malignant"],
            "modality": "histology", "input_size": [3, 32, 32], "threshold": 0.5}  # fmt: skip
    version = ModelRegistry().register(create_model("resnet18", 2).eval(), card)
    predictor = Predictor.from_registry(f"coarse@{version}", device="cpu", qc=False)
    roi = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}}
    missing = tmp_path / "never-read.png"  # the refusal comes before any image is decoded
    with pytest.raises(CamResolutionError, match="CAM layer is 1×1 at 32 px"):
        order_images(predictor, [missing], "roi_disagreement", rois={"sha": roi})
