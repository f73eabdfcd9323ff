"""The Analyze widget in a real napari viewer: pickers, runs, CAM layers, live ROI scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_pathreview.widgets._results import cam_layer_name, heatmap_layer_name
from napari_pathreview.widgets.analyze import AnalyzeWidget

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"
MIAS = "mias/mdb028.pgm"


def _messages(_monkeypatch: Any) -> list[str]:
    """Collect napari notifications shown by the widgets."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def _image(layers: list[Any]) -> Any:
    return next(layer for layer in layers if type(layer).__name__ == "Image")


def _run_to_end(qtbot: Any, widget: AnalyzeWidget, timeout_s: int = 60) -> None:
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=timeout_s * 1000)


def test_model_picker_lists_registered_models_of_the_layer_modality(
    open_sample: Any, histology_model: str, mammogram_model: str
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    widget = AnalyzeWidget(viewer)
    values = [ref for ref in widget.model_combo.choices if ref]
    assert values == [histology_model]
    assert "binary" in widget.model_info.value and "benign, malignant" in widget.model_info.value
    assert "0.750" in widget.model_info.value  # the card's test AUC
    widget.all_models.value = True
    assert {ref for ref in widget.model_combo.choices if ref} == {histology_model, mammogram_model}


def test_run_adds_a_cam_layer_of_the_image_shape(
    qtbot: Any, open_sample: Any, histology_model: str
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    image = _image(layers)
    widget = AnalyzeWidget(viewer)
    _run_to_end(qtbot, widget)
    assert widget.result is not None
    cam = viewer.layers[cam_layer_name(image)]
    assert cam.data.shape == image.data.shape[:2]
    assert cam.blending == "additive" and cam.colormap.name == "inferno"
    np.testing.assert_allclose(cam.scale, image.scale)
    assert widget.table.rowCount() == 2
    table = widget.table
    shown = {table.item(r, 0).text(): float(table.item(r, 1).text()) for r in range(2)}
    assert shown.keys() == {"benign", "malignant"}
    assert sum(shown.values()) == pytest.approx(1.0, abs=2e-3)
    record = image.metadata["pathreview"]["prediction"]
    assert record["model_name"] == "tiny-histology" and record["label"] in shown


def test_iou_follows_the_roi_layer_and_the_threshold(
    qtbot: Any, open_sample: Any, mammogram_model: str
) -> None:
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    widget = AnalyzeWidget(viewer)
    _run_to_end(qtbot, widget)
    rows, cols = image.data.shape[:2]
    roi = viewer.add_shapes(
        [[[0, 0], [0, cols], [rows, cols], [rows, 0]]], shape_type="rectangle", name="my ROI"
    )
    widget.reset_choices()
    widget.roi_combo.value = "my ROI"
    whole = widget.roi_scores["iou"]
    cam = widget.result.cam.cam
    r, c = np.unravel_index(np.argmax(cam), cam.shape)
    roi.data = [np.array([[r - 20, c - 20], [r - 20, c + 20], [r + 20, c + 20], [r + 20, c - 20]])]
    assert widget.roi_scores["iou"] != pytest.approx(whole)
    at_half = widget.roi_scores["iou"]
    widget.threshold.value = 0.95
    assert widget.roi_scores["iou"] != pytest.approx(at_half)
    assert "IoU" in widget.roi_label.text()


def test_viewer_keeps_processing_events_during_a_slow_run(
    qtbot: Any, open_sample: Any, histology_model: str, slow_loader: Any
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    widget = AnalyzeWidget(viewer, load_model=slow_loader(1.5))
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    widget.run()
    qtbot.waitUntil(lambda: len(ticks) >= 10, timeout=10_000)
    assert widget.cancel_button.isEnabled() and widget.result is None  # still running
    qtbot.waitUntil(lambda: widget.result is not None, timeout=60_000)
    timer.stop()


def test_cancel_stops_a_run_and_adds_nothing(
    qtbot: Any, open_sample: Any, histology_model: str, slow_loader: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    image = _image(layers)
    widget = AnalyzeWidget(viewer, load_model=slow_loader(1.0))
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.status.text() != "starting…", timeout=10_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
    assert widget.result is None
    assert cam_layer_name(image) not in viewer.layers
    assert widget.status.text() == "cancelled"
    assert widget.run_button.isEnabled()


def test_missing_model_and_absent_cuda_become_notifications(
    qtbot: Any, open_sample: Any, monkeypatch: pytest.MonkeyPatch, register_model: Any
) -> None:
    import torch

    seen = _messages(monkeypatch)
    viewer, _ = open_sample(BREAKHIS)
    widget = AnalyzeWidget(viewer)
    assert widget.run() is None
    assert any("pathreview demo" in m for m in seen)
    if torch.cuda.is_available():
        return
    register_model("tiny-histology", "histology", ["benign", "malignant"])
    widget.reset_choices()
    widget.device.value = "cuda"
    _run_to_end(qtbot, widget)
    assert any("CUDA is not available" in m for m in seen)
    assert widget.result is None


def test_a_mammogram_model_is_refused_on_histology(
    qtbot: Any, open_sample: Any, mammogram_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _messages(monkeypatch)
    viewer, _ = open_sample(BREAKHIS)
    widget = AnalyzeWidget(viewer)
    widget.all_models.value = True
    widget.model_combo.value = mammogram_model
    _run_to_end(qtbot, widget)
    assert widget.result is None
    assert any("trained on mammogram images" in m for m in seen)


def test_a_multiscale_slide_gets_aligned_cam_and_tile_heatmap_layers(
    qtbot: Any, open_sample: Any, histology_model: str
) -> None:
    viewer, layers = open_sample("slides/he_pyramid.tif")
    image = _image(layers)
    assert image.multiscale
    widget = AnalyzeWidget(viewer)
    _run_to_end(qtbot, widget, timeout_s=180)
    assert widget.result is not None and widget.result.tiled is not None
    cam = viewer.layers[cam_layer_name(image)]
    heat = viewer.layers[heatmap_layer_name(image)]
    rows, cols = image.data[0].shape[:2]
    for layer in (cam, heat):  # both cover the slide's full extent in world coordinates
        extent = layer.extent.world[1] - layer.extent.world[0]
        np.testing.assert_allclose(extent[-2:], (rows, cols), rtol=0.05)
    assert cam.data.shape[0] < rows  # explained at a coarser pyramid level, scaled up
    np.testing.assert_allclose(cam.scale, (rows / cam.data.shape[0], cols / cam.data.shape[1]))


def test_a_stack_layer_is_refused_with_advice(
    make_napari_viewer: Any, histology_model: str
) -> None:
    seen = _messages(None)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.uint8), name="stack")
    widget = AnalyzeWidget(viewer)
    assert widget.run() is None
    assert any("one 2-D image" in m for m in seen)
