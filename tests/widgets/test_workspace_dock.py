"""The PathReview workspace dock: tabs, laptop fit, queue-driven analysis, no freezes, sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import QPoint, QTimer
from qtpy.QtWidgets import QApplication

from napari_pathreview.widgets._results import cam_layer_of
from napari_pathreview.widgets._scale import scale_bar

pytestmark = pytest.mark.viewer

WORKSPACE = "Workspace (Analyze + Review)"
BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"


def _folder(tmp_path: Path, n: int, side: int = 48) -> list[Path]:
    folder = tmp_path / "queue"
    folder.mkdir()
    rng = np.random.default_rng(2)
    paths = []
    for i in range(n):
        path = folder / f"case_{i}.png"
        Image.fromarray(rng.integers(60, 200, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _laptop_window(viewer: Any) -> Any:
    window = viewer.window._qt_window
    window.resize(1366, 768)
    window.show()
    for _ in range(5):
        QApplication.processEvents()
    return window


def _on_screen(widget: Any, area: Any) -> bool:
    """Whether ``widget`` lies wholly inside the scroll area's visible viewport."""
    viewport = area.viewport()
    top_left = widget.mapTo(viewport, QPoint(0, 0))
    bottom_right = widget.mapTo(viewport, QPoint(widget.width() - 1, widget.height() - 1))
    return viewport.rect().contains(top_left) and viewport.rect().contains(bottom_right)


def test_one_tabbed_dock_fits_a_1366x768_screen_with_save_and_queue_visible(
    make_napari_viewer: Any, open_widget: Any
) -> None:
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    window = _laptop_window(viewer)
    assert window.height() <= 768
    assert [workspace.tabs.tabText(i) for i in range(workspace.tabs.count())] == [
        "Analyze",
        "Review",
    ]
    workspace.tabs.setCurrentIndex(1)
    QApplication.processEvents()
    area = workspace.tabs.currentWidget()
    review = workspace.review
    assert _on_screen(review.save_button, area)
    assert _on_screen(review.next_button, area) and _on_screen(review.progress_label, area)
    assert workspace.width() <= 420


def test_the_dock_keeps_its_width_when_results_arrive(
    qtbot: Any, open_sample: Any, open_widget: Any, register_model: Any
) -> None:
    ref = register_model(
        "a-histology-model-with-a-very-long-descriptive-name", "histology", ["benign", "malignant"]
    )
    viewer, _ = open_sample(BREAKHIS)
    workspace = open_widget(viewer, WORKSPACE)
    _laptop_window(viewer)
    before = workspace.width()
    analyze = workspace.analyze
    assert analyze.model_combo.value == ref
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    QApplication.processEvents()
    assert workspace.width() == before


def test_analyze_follows_the_queue_and_runs_on_each_image_without_freezing_the_ui(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths = _folder(tmp_path, 2, side=1024)
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    analyze, review = workspace.analyze, workspace.review
    analyze.auto_run.value = True
    review.reviewer.value = "dr_w"
    review.load_queue(paths[0].parent)  # the first image also pays one-time imports
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    assert analyze.image_combo.value == "case_0" and analyze.result_layer.name == "case_0"
    ticks_while_busy: list[bool] = []  # at each tick: was the next image still being analysed?

    def tick() -> None:
        busy = analyze.result is None or analyze.result_layer.name != "case_1"
        ticks_while_busy.append(busy)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    review.next_item()  # open the next 1024² image, analyse it, add the CAM
    qtbot.waitUntil(
        lambda: analyze.result is not None and analyze.result_layer.name == "case_1",
        timeout=60_000,
    )
    qtbot.wait(100)
    timer.stop()
    assert analyze.result.request.cam_method == "gradcam"
    assert review.model_line.value.startswith("tiny-histology")
    assert cam_layer_of(viewer, viewer.layers["case_1"]).visible
    # the viewer's event loop kept serving its timer while the image was opened and analysed
    # (a run on the UI thread would leave no tick in between); speed is the benchmarks' job
    assert sum(ticks_while_busy) >= 3


def test_a_session_restores_images_layers_queue_position_and_settings(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    histology_model: str,
    tmp_path: Path,
) -> None:
    paths = _folder(tmp_path, 3)
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    analyze, review = workspace.analyze, workspace.review
    review.reviewer.value = "dr_s"
    review.load_queue(paths[0].parent)
    qtbot.waitUntil(lambda: review.loaded_path == paths[0], timeout=20_000)
    review.next_item()
    qtbot.waitUntil(lambda: review.loaded_path == paths[1], timeout=20_000)
    viewer.add_shapes([np.array([[2, 2], [2, 30], [30, 30]])], shape_type="polygon", name="mine")
    analyze.cam_method.value = "gradcam++"
    analyze.threshold.value = 0.7
    analyze.opacity.value = 0.4
    analyze.tta.value = "flips"  # not the card's: the reader's choice is what is restored
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    workspace.tabs.setCurrentIndex(1)
    saved = workspace.save_session(tmp_path / "day1.session.json")
    assert saved is not None

    viewer2 = make_napari_viewer()  # the next morning
    restored = open_widget(viewer2, WORKSPACE)
    assert restored.restore_session(saved)
    qtbot.waitUntil(lambda: restored.review.loaded_path == paths[1], timeout=20_000)
    assert restored.review.queue.index == 1
    assert restored.review.reviewer.value == "dr_s"
    image = viewer2.layers["case_1"]
    assert image.metadata["pathreview"]["prediction"]["model_name"] == "tiny-histology"
    cam = cam_layer_of(viewer2, image)
    np.testing.assert_allclose(cam.data, analyze.result.cam.cam, atol=1e-6)
    assert cam.opacity == pytest.approx(0.4)
    assert "mine" in viewer2.layers
    assert restored.analyze.cam_method.value == "gradcam++"
    assert restored.analyze.threshold.value == pytest.approx(0.7)
    assert restored.analyze.tta.value == "flips"
    assert restored.tabs.currentIndex() == 1
    assert restored.review.model_line.value.startswith("tiny-histology")


def test_a_session_of_a_model_ordered_queue_reopens_the_image_under_review(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths = _folder(tmp_path, 4)
    workspace = open_widget(make_napari_viewer(), WORKSPACE)
    review = workspace.review
    review.queue_order.value, review.queue_model.value = "uncertainty", histology_model
    review.load_queue(paths[0].parent)
    qtbot.waitUntil(lambda: review.loaded_path is not None, timeout=60_000)
    ordered = list(review.queue.paths)
    assert ordered != paths  # the model's order is not the file names'
    step = next(i for i, (a, b) in enumerate(zip(ordered, paths, strict=True)) if a != b)
    for _ in range(step):
        review.next_item()
        qtbot.waitUntil(lambda: review.next_button.isEnabled(), timeout=20_000)
    assert review.loaded_path == ordered[step]
    saved = workspace.save_session(tmp_path / "day1.session.json")

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    qtbot.waitUntil(lambda: restored.review.loaded_path is not None, timeout=60_000)
    assert restored.review.loaded_path == ordered[step]
    assert restored.review.queue_order.value == "uncertainty"


def test_a_session_restores_an_roi_of_a_scale_1_layer_over_the_same_image_pixels(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path, sample_data: Path
) -> None:
    path = tmp_path / Path(BREAKHIS).name  # the name gives the magnification, hence µm/px
    path.write_bytes((sample_data / BREAKHIS).read_bytes())
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    [image] = viewer.open(path, plugin="napari-pathreview")
    assert float(image.scale[-1]) != 1.0  # µm per pixel
    pixels = np.array([[100.0, 150.0], [100.0, 500.0], [300.0, 500.0], [300.0, 150.0]])
    world = pixels * np.asarray(image.scale) + np.asarray(image.translate)
    viewer.add_shapes([world], shape_type="polygon", name="drawn at scale 1")
    saved = workspace.save_session(tmp_path / "s.session.json")
    assert saved is not None

    viewer2 = make_napari_viewer()
    assert open_widget(viewer2, WORKSPACE).restore_session(saved)
    restored = viewer2.layers["drawn at scale 1"]
    again = np.array([restored.data_to_world(v) for v in restored.data[0]])
    np.testing.assert_allclose(again, world, rtol=1e-6)


def test_scale_bar_is_in_micrometres_for_a_breakhis_patch(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    analyze = open_widget(viewer, "Analyze")
    assert scale_bar(viewer).visible
    assert [str(u) for u in viewer.layers.extent.units] == ["micrometer", "micrometer"]
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    cam = cam_layer_of(viewer, layers[0])
    assert [str(u) for u in cam.units] == ["micrometer", "micrometer"]
    assert [str(u) for u in viewer.layers.extent.units] == ["micrometer", "micrometer"]
