"""The Analyze widget opened from Plugins ▸ PathReview: pickers, runs, CAM layers, live ROI scores.

Every widget here is built by napari's plugin machinery (``add_plugin_dock_widget``), so it
gets the same wrapped viewer (``PublicOnlyProxy``) a user's widget gets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from qtpy.QtCore import QTimer
from review_helpers import messages

from napari_pathreview.widgets._results import cam_layer_of

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"
MIAS = "mias/mdb028.pgm"


def _image(layers: list[Any]) -> Any:
    from napari.layers import Image

    return next(layer for layer in layers if isinstance(layer, Image))


def _run_to_end(qtbot: Any, widget: Any, timeout_s: int = 60) -> None:
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=timeout_s * 1000)


def test_the_menu_widget_gets_napari_s_proxied_viewer(
    open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    from napari.utils._proxies import PublicOnlyProxy

    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    assert isinstance(widget.viewer, PublicOnlyProxy)
    assert widget.image_combo.value == "SOB_M_DC-14-2523-40-010"


def test_model_picker_lists_registered_models_of_the_layer_modality(
    open_sample: Any, open_widget: Any, histology_model: str, mammogram_model: str
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    values = [ref for ref in widget.model_combo.choices if ref]
    assert values == [histology_model]
    assert "binary" in widget.model_info.value and "benign, malignant" in widget.model_info.value
    assert "0.750" in widget.model_info.value  # the card's test AUC
    widget.all_models.value = True
    assert {ref for ref in widget.model_combo.choices if ref} == {histology_model, mammogram_model}


def test_run_adds_a_readable_cam_layer_named_for_method_and_class(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)
    assert widget.result is not None
    cam = cam_layer_of(viewer, image)
    explained = widget.result.cam.target_label
    assert cam.name == f"CAM gradcam → {explained} · {image.name}"
    assert cam.data.shape == image.data.shape[:2]
    assert cam.blending == "translucent"  # additive vanishes over bright H&E
    assert cam.colormap.colors[0][3] == 0.0 and cam.colormap.colors[-1][3] == 1.0
    assert cam.colorbar.visible
    lo, hi = cam.contrast_limits
    assert lo == pytest.approx(np.percentile(cam.data, 1), abs=1e-3)
    assert hi == pytest.approx(np.percentile(cam.data, 99.5), abs=1e-3)
    widget.opacity.value = 0.35
    assert cam.opacity == pytest.approx(0.35)
    np.testing.assert_allclose(cam.scale, image.scale)
    table = widget.table
    shown = {table.item(r, 0).text(): float(table.item(r, 1).text()) for r in range(2)}
    assert shown.keys() == {"benign", "malignant"}
    assert sum(shown.values()) == pytest.approx(1.0, abs=2e-3)
    record = image.metadata["pathreview"]["prediction"]
    assert record["model_name"] == "tiny-histology" and record["label"] in shown


def _shown(label: Any) -> str:
    """A QLabel's text as rendered on screen (rich text parsed as Qt parses it)."""
    from qtpy.QtGui import QTextDocument

    document = QTextDocument()
    document.setHtml(label.text())
    return document.toPlainText()


def test_decision_line_states_the_rule_with_its_numbers(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)
    p = widget.result.probabilities["malignant"]
    label = widget.result.prediction.label
    sign = "≥" if p >= 0.5 else "<"
    assert f"P(malignant) = {p:.3f} {sign} 0.500 → {label}" in _shown(widget.decision)
    assert "test AUC 0.750" in widget.metrics.text() and "n unknown" in widget.metrics.text()


def test_a_call_below_the_threshold_shows_its_rule_on_screen(
    qtbot: Any, open_sample: Any, open_widget: Any, register_model: Any
) -> None:
    """The decision line is rich text: "P < t → benign" must not be eaten as an HTML tag."""
    strict = register_model("tiny-strict", "histology", ["benign", "malignant"], threshold=0.999)
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = strict
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget)
    p = widget.result.probabilities["malignant"]
    shown = _shown(widget.decision)
    assert f"P(malignant) = {p:.3f} < 0.999 → benign" in shown
    assert "tiny-strict@1 · QC" in shown


def test_near_uniform_output_is_flagged_and_small_test_sets_show_n_and_ci(
    qtbot: Any, open_sample: Any, open_widget: Any, uniform_model: str
) -> None:
    viewer, _ = open_sample(MIAS)
    widget = open_widget(viewer, "Analyze")
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget)
    assert "uncertain" in widget.decision.text() and "<b>" not in widget.decision.text()
    assert "near-uniform" in widget.caveats.text()
    metrics = widget.metrics.text()
    assert "test AUC 1.000 (95 % CI 0.62–1.00, n = 5)" in metrics
    assert "small test set" in metrics


def test_a_failed_run_clears_the_previous_result(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, mammogram_model: str
) -> None:
    seen = messages()
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)
    assert widget.table.rowCount() == 2 and widget.decision.text()
    widget.all_models.value = True
    widget.model_combo.value = mammogram_model  # refused inside the run: wrong modality
    _run_to_end(qtbot, widget)
    assert any("trained on mammogram images" in m for m in seen)
    assert widget.result is None and widget.table.rowCount() == 0
    assert widget.decision.text() == "" and widget.metrics.text() == ""


def test_live_iou_from_the_plugins_menu_follows_shapes_and_threshold(
    qtbot: Any, open_sample: Any, open_widget: Any, mammogram_model: str
) -> None:
    seen = messages()
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)
    rows, cols = image.data.shape[:2]
    roi = viewer.add_shapes(  # in the image's frame, as napari's New Shapes button makes it
        [[[0, 0], [0, cols], [rows, cols], [rows, 0]]],
        shape_type="rectangle",
        name="my ROI",
        scale=image.scale,
        units=image.units,
    )
    widget.roi_combo.value = "my ROI"
    assert widget.roi_scores is not None, seen
    whole = widget.roi_scores["iou"]
    cam = widget.result.cam.cam
    r, c = np.unravel_index(np.argmax(cam), cam.shape)
    roi.data = [np.array([[r - 20, c - 20], [r - 20, c + 20], [r + 20, c + 20], [r + 20, c - 20]])]
    assert widget.roi_scores["iou"] != pytest.approx(whole)
    at_half = widget.roi_scores["iou"]
    widget.threshold.value = 0.95
    assert widget.roi_scores["iou"] != pytest.approx(at_half)
    assert "IoU" in widget.roi_label.text()
    assert not any("PublicOnlyProxy" in m for m in seen)


def test_live_iou_says_when_the_cam_is_empty_rather_than_a_miss(
    qtbot: Any, open_sample: Any, open_widget: Any, uniform_model: str
) -> None:
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)  # gradcam of a zeroed head: every gradient is 0, the CAM flat
    rows, cols = image.data.shape[:2]
    viewer.add_shapes(
        [[[0, 0], [0, cols // 2], [rows // 2, cols // 2], [rows // 2, 0]]],
        shape_type="rectangle",
        name="my ROI",
        scale=image.scale,
    )
    widget.roi_combo.value = "my ROI"
    assert widget.roi_scores is not None and widget.roi_scores["iou"] == 0.0
    assert "empty CAM" in widget.roi_label.text()


@pytest.mark.parametrize("placement", ["scale 1, drawn in world units", "affine"])
def test_live_iou_scores_an_roi_where_it_lies_over_the_image_whatever_its_layer_frame(
    qtbot: Any, open_sample: Any, open_widget: Any, mammogram_model: str, placement: str
) -> None:
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    assert float(image.scale[-1]) != 1.0  # mm per pixel
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)
    cam = widget.result.cam.cam
    r, c = np.unravel_index(np.argmax(cam), cam.shape)
    # edges a quarter pixel off any pixel centre: a rounding error in the frame flips none
    r0, r1, c0, c1 = r - 60.25, r + 60.25, c - 60.25, c + 60.25
    pixels = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])
    viewer.add_shapes([pixels], shape_type="rectangle", name="image frame", scale=image.scale)
    widget.roi_combo.value = "image frame"
    expected = widget.roi_scores["iou"]
    assert expected > 0.0
    if placement == "affine":  # a layer placed by an affine (OME-NGFF readers do this)
        other = {"affine": np.diag([*image.scale[-2:], 1.0])}
        data = pixels
    else:  # napari's "new shapes layer" button while another layer was active
        other, data = {}, pixels * np.asarray(image.scale) + np.asarray(image.translate)
    viewer.add_shapes([data], shape_type="rectangle", name="other frame", **other)
    widget.roi_combo.value = "other frame"
    assert widget.roi_scores["iou"] == pytest.approx(expected)


def test_painting_a_labels_roi_updates_the_iou(
    qtbot: Any, open_sample: Any, open_widget: Any, mammogram_model: str
) -> None:
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    _run_to_end(qtbot, widget)
    labels = viewer.add_labels(np.zeros(image.data.shape[:2], np.uint8), name="painted ROI")
    widget.roi_combo.value = "painted ROI"
    assert widget.roi_scores["iou"] == 0.0
    cam = widget.result.cam.cam
    r, c = np.unravel_index(np.argmax(cam), cam.shape)
    labels.selected_label = 1
    labels.paint((r, c), 1)  # what a brush stroke calls
    assert widget.roi_scores["iou"] > 0.0


def test_viewer_keeps_processing_events_during_a_slow_run(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, slow_loader: Any
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    widget.load_model = slow_loader(1.5)
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
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, slow_loader: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    widget.load_model = slow_loader(1.0)
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.status.text() != "starting…", timeout=10_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
    # the worker's finished signal reaches the panel through the event loop, a moment later
    qtbot.waitUntil(lambda: widget.status.text() == "cancelled", timeout=10_000)
    assert widget.run_button.isEnabled()
    assert widget.result is None
    assert cam_layer_of(viewer, image) is None


def test_cancel_empties_the_progress_bar(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, slow_loader: Any
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    widget.load_model = slow_loader(0.5)
    widget.tta.value = "flips"  # several forward passes: the bar moves before Cancel
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=30_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
    qtbot.waitUntil(lambda: widget.status.text() == "cancelled", timeout=10_000)
    assert widget.progress.value() < widget.progress.minimum()  # reset: no bar, no "49 %"
    assert widget.progress.text() == ""


def test_a_failed_run_empties_the_progress_bar(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    from napari_pathreview.inference.analysis import default_loader

    def failing_on_second_pass(ref: str, device: str) -> tuple[Any, Any]:
        model, card = default_loader(ref, device)
        passes: list[int] = []

        def fail(_module: Any, _inputs: Any) -> None:
            passes.append(1)
            if len(passes) > 1:
                raise RuntimeError("CUDA error: out of memory")

        model.register_forward_pre_hook(fail)
        return model, card

    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    widget.load_model = failing_on_second_pass
    widget.tta.value = "flips"
    shown: list[int] = []
    worker = widget.run()
    worker.yielded.connect(lambda _item: shown.append(widget.progress.value()))
    qtbot.waitUntil(lambda: widget.status.text().startswith("failed"), timeout=60_000)
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=10_000)
    assert max(shown) > 0  # the bar had moved before the failure
    assert widget.progress.value() < widget.progress.minimum()
    assert widget.progress.text() == ""


def test_cancel_inside_score_cam_takes_effect_within_one_batch(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    from napari_pathreview.inference.analysis import default_loader

    forwards: list[bool] = []
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")

    def counting_loader(ref: str, device: str) -> tuple[Any, Any]:
        model, card = default_loader(ref, device)
        model.register_forward_pre_hook(lambda _m, _i: forwards.append(widget._cancel.is_set()))
        return model, card

    widget.load_model = counting_loader
    widget.cam_method.value = "scorecam"
    statuses: list[str] = []
    worker = widget.run()
    worker.yielded.connect(lambda _item: statuses.append(widget.status.text()))
    qtbot.waitUntil(lambda: "explaining (scorecam) 64/" in widget.status.text(), timeout=60_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=60_000)
    qtbot.waitUntil(lambda: widget.status.text() == "cancelled", timeout=10_000)
    assert widget.result is None
    assert sum(forwards) <= 1  # at most the batch already running when Cancel was pressed
    assert any("s left" in s for s in statuses)  # progress inside Score-CAM carries an ETA


def test_missing_model_and_absent_cuda_become_notifications(
    qtbot: Any, open_sample: Any, open_widget: Any, register_model: Any
) -> None:
    import torch

    seen = messages()
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
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


def test_a_multiscale_slide_gets_aligned_cam_and_tile_heatmap_layers(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, layers = open_sample("slides/he_pyramid.tif")
    image = _image(layers)
    assert image.multiscale
    widget = open_widget(viewer, "Analyze")
    widget.slide_mode.value = "preview"  # the bundled pyramid states no µm/px (issue 13)
    _run_to_end(qtbot, widget, timeout_s=180)
    assert widget.result is not None and widget.result.tiled is not None
    cam = cam_layer_of(viewer, image)
    heat = next(
        layer
        for layer in viewer.layers
        if (layer.metadata.get("pathreview") or {}).get("kind") == "tile_probability"
    )
    rows, cols = image.data[0].shape[:2]
    for layer in (cam, heat):  # both cover the slide's full extent in world coordinates
        # napari's extent spans pixel centres: add one pixel to compare outer edges
        extent = layer.extent.world[1] - layer.extent.world[0] + np.asarray(layer.scale)
        np.testing.assert_allclose(
            extent[-2:], np.array((rows, cols)) * image.scale[-2:], rtol=0.05
        )
    assert cam.data.shape[0] < rows  # explained at a coarser pyramid level, scaled up
    np.testing.assert_allclose(
        cam.scale,
        np.array((rows / cam.data.shape[0], cols / cam.data.shape[1])) * image.scale[-2:],
    )


def test_a_stack_layer_is_refused_with_advice(
    make_napari_viewer: Any, open_widget: Any, histology_model: str
) -> None:
    seen = messages()
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.uint8), name="stack")
    widget = open_widget(viewer, "Analyze")
    assert widget.run() is None
    assert any("one 2-D image" in m for m in seen)


def test_only_the_image_s_own_roi_is_offered_and_picked_for_live_iou(
    qtbot: Any, open_sample: Any, open_widget: Any, mammogram_model: str, sample_data: Any
) -> None:
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    rois = [layer.name for layer in layers if layer is not image]
    assert rois == [f"{image.name} ROI"]
    other = viewer.open(sample_data / BREAKHIS, plugin="napari-pathreview")[0]
    viewer.add_shapes(
        [np.array([[0, 0], [0, 9], [9, 9]])],
        shape_type="polygon",
        name="other ROI",
        metadata={"pathreview": {"kind": "roi", "image": other.name}},
    )
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = image.name
    assert widget.roi_combo.value == f"{image.name} ROI"
    assert "other ROI" not in widget.roi_combo.choices
    _run_to_end(qtbot, widget)
    assert widget.roi_scores is not None  # live IoU against the image's own ROI, no clicks


def test_selecting_an_image_makes_analyze_follow_and_auto_run_it(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, sample_data: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    widget.auto_run.value = True
    widget.cam_method.value = "none"
    other = viewer.open(
        sample_data / "breakhis/SOB_B_F-14-9133-40-001.png", plugin="napari-pathreview"
    )[0]
    viewer.layers.selection.active = viewer.layers[other.name]
    assert widget.image_combo.value == other.name
    qtbot.waitUntil(lambda: widget.result is not None, timeout=60_000)
    assert widget.result_layer.name == other.name
    viewer.layers.selection.active = viewer.layers[layers[0].name]
    assert widget.image_combo.value == layers[0].name
    assert widget.result is None  # the other image's result is not shown for this one
    qtbot.waitUntil(
        lambda: widget.result is not None and widget.result_layer.name == layers[0].name,
        timeout=60_000,
    )


def _register_lesion_mammogram_model() -> str:
    """A random-weight patch MIL mammogram model at 0.8 mm/px (32-px patches, 8×8 grid)."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    model = create_model(
        "patch_mil", 3, encoder="test_resnet", patch_size=32, pooling="attention", input_size=256
    )
    card = {
        "name": "tiny-lesion",
        "task": "mammogram",
        "classes": ["normal", "benign", "malignant"],
        "modality": "mammogram",
        "recipe": {"lesion": {"negative_class": "normal"}},
        "preprocess": {"pixel_size": 0.8, "pixel_unit": "mm", "channels": "grey_to_rgb"},
    }
    return f"tiny-lesion@{ModelRegistry().register(model, card)}"


@pytest.mark.parametrize("kind", ["patch_map", "attention_map"])
def test_a_lesion_model_offers_its_patch_and_attention_maps_scored_live_against_the_roi(
    qtbot: Any, open_sample: Any, open_widget: Any, mammogram_model: str, kind: str
) -> None:
    lesion_model = _register_lesion_mammogram_model()
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = mammogram_model
    assert "patch_map" not in widget.cam_method.choices  # an ordinary CNN has CAMs only
    widget.model_combo.value = lesion_model
    assert {"patch_map", "attention_map"} <= set(widget.cam_method.choices)
    widget.cam_method.value = kind
    _run_to_end(qtbot, widget)
    cam = cam_layer_of(viewer, image)
    assert cam.name.startswith(f"CAM {kind} → ")
    assert cam.data.shape == image.data.shape[:2]
    assert float(cam.data.min()) >= 0.0 and float(cam.data.max()) <= 1.0
    assert float(cam.data.max()) > float(cam.data.min())  # a map, not a constant
    assert widget.roi_scores is not None and "IoU" in widget.roi_label.text()


def test_a_picked_model_reads_with_the_views_its_threshold_was_fitted_under(
    qtbot: Any, open_sample: Any, open_widget: Any, register_model: Any
) -> None:
    flips = register_model("tiny-flips", "histology", ["benign", "malignant"], tta="flips")
    plain = register_model("tiny-plain", "histology", ["benign", "malignant"], seed=1)
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = flips
    assert widget.tta.value == "flips" and "fitted under TTA flips" in widget.model_info.value
    widget.tta.value = "none"  # the reader's own choice stands for this model ...
    _run_to_end(qtbot, widget)
    assert widget.result.prediction.tta == "none"
    assert "threshold was fitted under test-time augmentation 'flips'" in widget.caveats.text()
    widget.model_combo.value = plain  # ... until another model is picked
    assert widget.tta.value == "none" and "TTA" not in widget.model_info.value
    widget.model_combo.value = flips
    assert widget.tta.value == "flips"


def test_a_three_class_table_shows_every_class_without_scrolling(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, sample_data: Any, uniform_model: str
) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.open(sample_data / MIAS, plugin="napari-pathreview")
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = uniform_model
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget)
    table = widget.table
    qtbot.waitUntil(lambda: table.isVisible(), timeout=5_000)
    assert table.rowCount() == 3
    assert not table.verticalScrollBar().isVisible()
    rows = sum(table.rowHeight(r) for r in range(3))
    assert table.viewport().height() >= rows  # the last class is not cut off


def test_a_one_pixel_image_is_refused_and_a_small_one_warned(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str
) -> None:
    seen = messages()
    viewer = make_napari_viewer()
    pink = np.array([200, 120, 180], np.uint8)
    viewer.add_image(np.full((1, 1, 3), pink), rgb=True, name="dot")
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = "dot"
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget)
    assert widget.result is None
    assert any("1×1 px: too small to classify" in m for m in seen)

    rng = np.random.default_rng(0)
    viewer.add_image(np.clip(rng.normal(pink, 30, (12, 12, 3)), 0, 210).astype(np.uint8),
                     rgb=True, name="speck")  # fmt: skip
    widget.image_combo.value = "speck"
    _run_to_end(qtbot, widget)
    assert widget.result is not None
    assert any("heavily upsampled" in w for w in widget.result.warnings)
    assert "heavily upsampled" in widget.decision.text()  # QC line of the panel


def test_a_tiled_image_gets_its_tissue_tiles_quality_check_as_pathreview_predict_does(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, sample_data: Any
) -> None:
    from napari_pathreview.inference import Predictor
    from napari_pathreview.inference.large_images import iter_classify_tiles, run_to_end
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slide_grid import SlideSettings
    from napari_pathreview.inference.slide_qc import SlideQC

    viewer, _ = open_sample("slides/he_pyramid.tif")  # a pyramid: the dock tiles it
    widget = open_widget(viewer, "Analyze")
    widget.slide_mode.value = "preview"  # the bundled pyramid states no µm/px
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget, timeout_s=180)
    assert widget.result is not None and widget.result.tiled is not None
    qc = widget.result.prediction.qc
    assert isinstance(qc, SlideQC) and qc.n_tiles == len(widget.result.tiled.tile_probabilities)
    # pathreview predict's steps for a large image (inference.cli._classify)
    source = as_slide(sample_data / "slides/he_pyramid.tif")
    steps = iter_classify_tiles(Predictor.from_registry(histology_model), source,
                                SlideSettings(mode="preview"))  # fmt: skip
    prediction, _ = run_to_end(steps)
    assert qc == prediction.qc  # same tiles, shares and verdict
    assert "QC: " in _shown(widget.decision)
