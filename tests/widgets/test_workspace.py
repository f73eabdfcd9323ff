"""The demo workspace: samples, both widgets docked, a prediction and CAM already shown."""

from __future__ import annotations

from typing import Any

import pytest

from napari_pathreview.widgets._results import cam_layer_name
from napari_pathreview.widgets._workspace import build_workspace

pytestmark = pytest.mark.viewer


def test_workspace_shows_a_cam_over_the_mammogram_with_its_roi(
    make_napari_viewer: Any, histology_model: str, mammogram_model: str
) -> None:
    viewer = make_napari_viewer()
    analyze, review = build_workspace(
        viewer, {"histology": histology_model, "mammogram": mammogram_model}, device="cpu"
    )
    assert set(viewer.window.dock_widgets) >= {"Analyze", "Review"}
    mammogram = viewer.layers["mdb028"]
    cam = viewer.layers[cam_layer_name(mammogram)]
    assert cam.visible and cam.data.shape == mammogram.data.shape[:2]
    assert analyze.result_layer is mammogram
    assert analyze.roi_scores is not None and 0.0 <= analyze.roi_scores["iou"] <= 1.0
    histology = next(layer for layer in viewer.layers if layer.name.startswith("SOB_M"))
    assert histology.metadata["pathreview"]["prediction"]["model_name"] == "tiny-histology"
    assert not histology.visible
    assert review.image_combo.value == "mdb028"
    assert review.label.choices == ("normal", "benign", "malignant")
