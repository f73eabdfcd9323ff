"""The demo workspace: samples, both widgets docked, a prediction and CAM already shown."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_pathreview.explain.metrics import roi_scores
from napari_pathreview.widgets._results import cam_layer_of, roi_mask
from napari_pathreview.widgets._scale import viewer_camera
from napari_pathreview.widgets._workspace import build_workspace

pytestmark = pytest.mark.viewer


def test_workspace_shows_a_cam_over_the_mammogram_with_its_roi(
    make_napari_viewer: Any, histology_model: str, mammogram_model: str
) -> None:
    viewer = make_napari_viewer()
    analyze, review = build_workspace(
        viewer, {"histology": histology_model, "mammogram": mammogram_model}, device="cpu"
    )
    assert "PathReview" in viewer.window.dock_widgets  # one tabbed dock (Analyze, Review)
    mammogram = viewer.layers["mdb028"]
    cam = cam_layer_of(viewer, mammogram)
    assert cam.visible and cam.data.shape == mammogram.data.shape[:2]
    assert analyze.result_layer is mammogram
    assert analyze.roi_scores is not None and 0.0 <= analyze.roi_scores["iou"] <= 1.0
    histology = next(layer for layer in viewer.layers if layer.name.startswith("SOB_M"))
    assert histology.metadata["pathreview"]["prediction"]["model_name"] == "tiny-histology"
    assert not histology.visible
    assert review.image_combo.value == "mdb028"
    assert [c for c in review.label.choices if c is not None] == ["normal", "benign", "malignant"]


@pytest.fixture
def histology_model_um() -> str:
    """A histology model trained at 1 µm/px: the demo slide is analysed with it (as in the demo)."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    card = {
        "name": "tiny-histology-um",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 64, 64],
        "threshold": 0.5,
        "preprocess": {"input_size": [3, 64, 64], "pixel_size": 1.0, "pixel_unit": "um"},
    }
    version = ModelRegistry().register(create_model("mobilenetv3_small_050", 2), card)
    return f"tiny-histology-um@{version}"


def test_workspace_panel_shows_the_mammograms_result_not_the_slides(
    make_napari_viewer: Any, histology_model_um: str, mammogram_model: str
) -> None:
    viewer = make_napari_viewer()
    analyze, _review = build_workspace(
        viewer, {"histology": histology_model_um, "mammogram": mammogram_model}, device="cpu"
    )
    assert "he_pyramid_0.25um" in viewer.layers  # the slide was analysed as well
    mammogram, roi = viewer.layers["mdb028"], viewer.layers["mdb028 ROI"]
    assert analyze.result_layer is mammogram
    assert analyze.result.model_name == "tiny-mammogram"
    # the IoU shown is the mammogram's CAM against its own ROI, not the slide's CAM
    expected = roi_scores(analyze.result.cam.cam, roi_mask(roi, mammogram), 0.5)
    assert analyze.roi_scores == pytest.approx(expected)


def test_workspace_analyses_the_sample_slide_at_the_models_resolution(
    make_napari_viewer: Any, histology_model_um: str, mammogram_model: str
) -> None:
    viewer = make_napari_viewer()
    models = {"histology": histology_model_um, "mammogram": mammogram_model}
    build_workspace(viewer, models, device="cpu")
    slide = viewer.layers["he_pyramid_0.25um"]
    assert slide.multiscale and slide.metadata["pathreview"]["um_per_px"] == 0.25
    heat = next(layer for layer in viewer.layers if layer.name.startswith("P(malignant)"))
    assert heat.name.endswith(" 1 µm/px")  # tiled at the model's resolution, not a preview
    assert heat.data.shape == (4, 4)  # 64-px tiles at 1 µm/px: 256 slide px each
    cam = cam_layer_of(viewer, slide)
    for layer in (heat, cam):  # both cover the slide exactly (outer edges, world units)
        extent = layer.extent.world[1] - layer.extent.world[0] + np.asarray(layer.scale)
        np.testing.assert_allclose(extent[-2:], np.array((1024, 1024)) * 0.25, rtol=1e-6)


def test_workspace_view_is_centred_on_the_mammogram_not_the_hidden_slide(
    make_napari_viewer: Any, histology_model_um: str, mammogram_model: str
) -> None:
    viewer = make_napari_viewer()
    build_workspace(
        viewer, {"histology": histology_model_um, "mammogram": mammogram_model}, device="cpu"
    )
    film = viewer.layers["mdb028"]
    # the world is in µm (the slides'); the film's own extent is in mm: 1 mm = 1,000 world units
    assert [str(u) for u in viewer.layers.extent.units] == ["micrometer", "micrometer"]
    assert [str(u) for u in film.units] == ["millimeter", "millimeter"]
    extent_um = film.extent.world[:, -2:] * 1000.0
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], extent_um.mean(axis=0))
    # and zoomed to fit the film, not 1000× into its corner
    canvas = np.asarray(viewer.canvas.size)
    fitted = viewer_camera(viewer).zoom * (extent_um[1] - extent_um[0])  # canvas pixels it spans
    assert 0.8 < (fitted / canvas).max() <= 1.0
