"""Issue 13: a slide's heatmap appears when Run starts and fills in while the UI stays live."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer


def _slide(path: Path, blurred_to: int = 0) -> Path:
    """A 1024×1536 RGB pyramid at 0.25 µm/px with an elliptic patch of tissue; its columns
    before ``blurred_to`` out of focus (a Gaussian blur, sigma 4 px)."""
    import cv2

    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    rng = np.random.default_rng(0)
    image = np.full((1024, 1536, 3), 240, np.uint8)
    yy, xx = np.mgrid[0:1024, 0:1536]
    tissue = ((yy - 512) / 420.0) ** 2 + ((xx - 768) / 620.0) ** 2 < 1
    texture = np.array([175, 105, 160]) + 25 * np.sin(xx[..., None] / 9.0)
    image[tissue] = np.clip(texture + rng.normal(0, 20, image.shape), 0, 215)[tissue]
    if blurred_to:
        image[:, :blurred_to] = cv2.GaussianBlur(image[:, :blurred_to], (0, 0), 4)
    return write_pyramidal_tiff(
        image, path, tile=128, n_levels=3, microns_per_pixel=0.25, compression="deflate"
    )


def _register_model_at_half_micron() -> str:
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    model = create_model("mobilenetv3_small_050", 2)
    card = {
        "name": "tiny-slide",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 64, 64],
        "threshold": 0.5,
        "preprocess": {"input_size": [3, 64, 64], "pixel_size": 0.5, "pixel_unit": "um"},
    }
    return f"tiny-slide@{ModelRegistry().register(model, card)}"


def _heatmap(viewer: Any) -> Any:
    for layer in viewer.layers:
        if (layer.metadata.get("pathreview") or {}).get("kind") == "tile_probability":
            return layer
    return None


def _slide_dock(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path, blurred_to: int = 0
) -> tuple[Any, Any]:
    """A viewer with a µm slide open and the Analyze dock on it, set to its model, no CAM."""
    ref = _register_model_at_half_micron()
    viewer = make_napari_viewer()
    viewer.open(_slide(tmp_path / "slide.tif", blurred_to), plugin="napari-pathreview")
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = ref
    widget.cam_method.value = "none"
    return viewer, widget


def test_heatmap_appears_at_start_and_fills_in_without_freezing_the_ui(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    ref = _register_model_at_half_micron()
    viewer = make_napari_viewer()
    (image,) = viewer.open(_slide(tmp_path / "slide.tif"), plugin="napari-pathreview")
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = ref
    widget.cam_method.value = "none"
    seen: list[tuple[bool, int]] = []  # (running, cells filled) at every tick

    def tick() -> None:
        heat = _heatmap(viewer)
        if heat is not None:
            seen.append((widget.cancel_button.isEnabled(), int((heat.data > 0).sum())))

    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(tick)
    timer.start()
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=300_000)
    timer.stop()
    heat = _heatmap(viewer)
    assert heat is not None and widget.result is not None
    final = int((heat.data > 0).sum())
    running = [filled for was_running, filled in seen if was_running]
    assert running and running[0] < final  # shown while running, before it was complete
    assert len(set(running)) >= 2  # and it filled in over several batches
    assert final == int(widget.result.tiled.coverage.sum()) > 0
    assert "tiny-slide@1" in heat.name and "malignant" in heat.name and "0.5 µm/px" in heat.name
    assert tuple(heat.contrast_limits) == (0.0, 1.0)  # fixed: not stretched to this map's range
    assert heat.units == image.units  # µm, as the slide: the viewer keeps one world unit
    assert [str(u) for u in viewer.layers.extent.units] == ["micrometer", "micrometer"]
    # the viewer's event loop kept serving its timer while the slide was read and classified:
    # a run on the UI thread would leave no tick between its start and its end
    assert len(running) >= 3
    first = heat.data.copy()
    batches: list[Any] = []
    worker = widget.run()  # the same slide again: the cached result, nothing streams
    worker.yielded.connect(lambda item: batches.append(type(item).__name__))
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=300_000)
    again = _heatmap(viewer)
    assert "SlideBatch" not in batches and widget.result is not None
    np.testing.assert_array_equal(again.data, first)
    assert "(tiles from the cache of a " in widget.status.text()  # not shown as computed now


def test_cancelling_a_slide_run_leaves_no_partial_heatmap(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, slow_loader: Any, tmp_path: Path
) -> None:
    """Unclassified cells are transparent, as low ones are: half a map reads as a finished one."""
    viewer, widget = _slide_dock(make_napari_viewer, open_widget, tmp_path)
    widget.load_model = slow_loader(0.2)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: _heatmap(viewer) is not None, timeout=120_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=120_000)
    assert widget.result is None and widget.status.text() == "cancelled"
    assert _heatmap(viewer) is None


def test_a_slide_s_result_shows_its_quality_check_when_qc_is_ticked(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    _viewer, widget = _slide_dock(make_napari_viewer, open_widget, tmp_path)
    assert widget.qc.value  # ticked, as by default
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=120_000)
    assert widget.result is not None and widget.result.prediction.qc is not None
    decision = widget.decision.text()
    assert "QC: passed" in decision or "QC: " in decision.split(" · ")[-1]
    assert not decision.endswith(" · ")  # the line once ended in a dangling separator


def test_a_slide_half_out_of_focus_shows_its_share_of_blurred_tiles_as_its_qc(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    _viewer, widget = _slide_dock(make_napari_viewer, open_widget, tmp_path, blurred_to=768)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=120_000)
    result = widget.result
    assert result is not None
    cell = result.tiled.grid.cell[1]
    in_blur = ((result.tiled.tile_cols + 1) * cell <= 768).mean()  # tiles wholly blurred
    qc = result.prediction.qc
    assert not qc.passed and qc.shares["blur"] == in_blur > 0.25
    (warning,) = result.warnings
    assert f"{in_blur:.0%} of {qc.n_tiles} tissue tiles fail QC" in warning
    assert html.unescape(widget.decision.text()).endswith("QC: " + warning)  # rich text


def test_a_slide_s_result_says_qc_is_off_when_unticked(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    _viewer, widget = _slide_dock(make_napari_viewer, open_widget, tmp_path)
    widget.qc.value = False
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=120_000)
    assert widget.result is not None and widget.result.prediction.qc is None
    assert widget.decision.text().endswith("QC: off")


def test_a_slide_run_shows_one_time_left_estimate(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, slow_loader: Any, tmp_path: Path
) -> None:
    viewer, widget = _slide_dock(make_napari_viewer, open_widget, tmp_path)
    widget.load_model = slow_loader(0.05)
    statuses: list[str] = []
    worker = widget.run()
    worker.yielded.connect(lambda _item: statuses.append(widget.status.text()))
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=120_000)
    tiles = [s for s in statuses if "tiles/s" in s]
    assert any("s left" in s for s in tiles)
    assert not any("ETA" in s for s in tiles)  # not "ETA 6 s · ~36 s left"


def test_the_tissue_mask_can_be_shown_as_a_labels_layer_over_the_slide(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    from napari_pathreview.inference.heatmap import HeatmapStream
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slides import SlideSettings, SlideStart, plan_grid
    from napari_pathreview.inference.tissue import slide_tissue

    viewer = make_napari_viewer()
    path = _slide(tmp_path / "slide.tif")
    (image,) = viewer.open(path, plugin="napari-pathreview")
    source = as_slide(path)
    grid = plan_grid(source, (64, 64), SlideSettings(), 0.5)
    stream = HeatmapStream(viewer, image, "malignant", show_tissue=True)
    stream.feed(SlideStart(grid, ("benign", "malignant"), "m@1", 0, slide_tissue(source)))
    tissue = viewer.layers[f"tissue · {image.name}"]
    assert not tissue.visible and tissue.data.any() and tissue.units == image.units
    np.testing.assert_allclose(  # it covers the slide: corner-to-corner extents agree
        tissue.extent.world[1] - tissue.extent.world[0] + np.asarray(tissue.scale),
        image.extent.world[1][-2:] - image.extent.world[0][-2:] + 1,
        rtol=0.01,
    )


def test_a_session_brings_a_slide_s_heatmap_back_where_it_was(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    from napari_pathreview.inference import Predictor
    from napari_pathreview.inference.heatmap import HeatmapStream
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slides import predict_slide

    path = _slide(tmp_path / "slide.tif")
    predictor = Predictor.from_registry(_register_model_at_half_micron())
    result = predict_slide(predictor, as_slide(path))
    viewer = make_napari_viewer()
    (image,) = viewer.open(path, plugin="napari-pathreview")
    stream = HeatmapStream(viewer, image)
    stream.show(result)
    heat = stream.layer
    saved = open_widget(viewer, "Workspace (Analyze + Review)").save_session(tmp_path / "s.json")
    assert saved is not None

    viewer2 = make_napari_viewer()  # the next morning
    assert open_widget(viewer2, "Workspace (Analyze + Review)").restore_session(saved)
    again = _heatmap(viewer2)
    assert again is not None and again.name == heat.name
    np.testing.assert_array_equal(again.data, heat.data)
    np.testing.assert_allclose(again.scale, heat.scale)
    np.testing.assert_allclose(again.translate, heat.translate)
    assert again.units == heat.units and again.metadata["pathreview"]["image"] == image.name
    np.testing.assert_allclose(again.colormap.colors, heat.colormap.colors)  # clear low end
    np.testing.assert_allclose(again.contrast_limits, heat.contrast_limits)


def test_cached_tiles_geojson_opens_over_its_slide_at_the_slide_s_scale(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    from napari_pathreview.inference import Predictor
    from napari_pathreview.inference.cache import SlideCache, cached_slide
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slides import SlideSettings

    path = _slide(tmp_path / "slide.tif")
    predictor = Predictor.from_registry(_register_model_at_half_micron(), device="cpu")
    cache = SlideCache(tmp_path / "cache")
    list(cached_slide(predictor, as_slide(path), SlideSettings(), cache))
    tiles = cache.entries()[0].folder / "tiles.geojson"  # no slide beside it
    viewer = make_napari_viewer()
    [slide] = viewer.open(path, plugin="napari-pathreview")
    [shapes] = viewer.open(tiles, plugin="napari-pathreview")
    assert tuple(slide.scale) == tuple(shapes.scale) == (0.25, 0.25)
    assert tuple(shapes.units) == tuple(slide.units) and str(slide.units[0]) == "micrometer"
    assert shapes.metadata["pathreview"]["frame_from"] == "file"
