"""The demo's window: samples opened, both widgets docked, a prediction and CAM shown.

Also used to take the README screenshot (``pathreview demo --screenshot PNG``), so the
picture is always of the real workspace.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from napari_pathreview.inference.analysis import AnalysisResult, analyse
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._scale import fit_view, pixel_size_um

logger = logging.getLogger(__name__)


def _open_sample(viewer: Any, sample: Any) -> list[Any]:
    """Open a sample through the plugin's reader (so metadata and ROI layers come with it)."""
    return list(viewer.open(sample.path, plugin="napari-pathreview"))


def _roi_layer(viewer: Any, layers: list[Any], sample: Any, image_layer: Any) -> Any:
    """The sample's ROI layer from the reader, else a Labels layer made from its mask."""
    for layer in layers:
        if type(layer).__name__ in ("Shapes", "Labels"):
            return layer
    if sample.roi is None:
        return None
    return viewer.add_labels(
        sample.roi.astype("uint8"),
        name=f"ROI · {image_layer.name}",
        scale=image_layer.scale,
        translate=image_layer.translate,
        opacity=0.4,
    )


def build_workspace(viewer: Any, models: dict[str, str], device: str = "auto") -> tuple[Any, Any]:
    """Fill ``viewer`` with the demo samples and widgets and show a prediction + CAM.

    Returns:
        (analyze_widget, review_widget).
    """
    from napari_pathreview._demo_samples import demo_samples
    from napari_pathreview.widgets.workspace import PathReviewWorkspace

    opened = [(sample, _open_sample(viewer, sample)) for sample in demo_samples()]
    workspace = PathReviewWorkspace(viewer)  # one tabbed dock that fits a 1366×768 screen
    analyze, review = workspace.analyze, workspace.review
    analyze.dock = review.dock = viewer.window.add_dock_widget(
        workspace, name="PathReview", area="right"
    )
    analyze.workspace = review.workspace = workspace
    # The slide first: the panel must end on the shown sample's own result (the mammogram's),
    # or it would show the slide's decision and score the slide's CAM against the mammogram's ROI.
    _show_demo_slide(viewer, analyze, models["histology"], device)
    shown = None
    for sample, layers in opened:  # the mammogram (with its ROI) comes last: it is shown
        image = next(layer for layer in layers if type(layer).__name__ == "Image")
        roi = _roi_layer(viewer, layers, sample, image)
        analyze.image_combo.value = image.name
        analyze.model_combo.value = models[sample.modality]
        analyze.cam_method.value = "gradcam"
        if roi is not None:
            analyze.roi_combo.value = roi.name
        result = _analyse_now(analyze, image, models[sample.modality], sample.modality, device)
        analyze.show_result(result, image)
        shown = (image, roi)
    image, roi = shown
    for layer in viewer.layers:
        layer.visible = layer is image or layer is roi or layer.name.endswith(image.name)
    analyze.image_combo.value = image.name
    if roi is not None:
        analyze.roi_combo.value = roi.name
    analyze.update_roi_scores()
    review.reset_choices()
    review.image_combo.value = image.name
    viewer.layers.selection.active = image
    fit_view(viewer, [image])  # the hidden slide is larger: it would shrink the view
    return analyze, review


def _show_demo_slide(viewer: Any, analyze: Any, model_ref: str, device: str) -> None:
    """The sample pyramid (given its µm/px) analysed at the model's own resolution.

    Adds the slide, its P(class) heatmap and its stitched CAM (hidden behind the last sample;
    tick them in the layer list). A histology model without a training resolution cannot tile
    a slide matched: the slide is then left out with a warning, never analysed at a guess.
    """
    from napari_pathreview._demo_slide import demo_slide_path
    from napari_pathreview.inference.heatmap import HeatmapStream
    from napari_pathreview.inference.slide_grid import SlideScaleError

    layers = list(viewer.open(demo_slide_path(), plugin="napari-pathreview"))
    image = next(layer for layer in layers if type(layer).__name__ == "Image")
    analyze.image_combo.value = image.name
    analyze.model_combo.value = model_ref
    try:
        result = _analyse_now(analyze, image, model_ref, "histology", device)
    except SlideScaleError as error:
        logger.warning("demo slide not analysed: %s", error)
        return
    HeatmapStream(viewer, image).show(result.tiled)
    analyze.show_result(result, image)


def _analyse_now(analyze: Any, image: Any, model_ref: str, modality: str, device: str) -> Any:
    """Run the widget's pipeline in this thread (the window is not shown yet)."""
    from dataclasses import replace

    from napari_pathreview.widgets import _results

    request = replace(analyze.request(), model_ref=model_ref, device=device)
    levels = _results.layer_levels(image)
    for item in analyse(
        request,
        levels if len(levels) > 1 else levels[0],
        modality=modality,
        load_model=analyze.load_model,
        um_per_px=pixel_size_um(plugin_meta(image)),
    ):
        if isinstance(item, AnalysisResult):
            return item
    raise RuntimeError("the analysis yielded no result")


def _screenshots(viewer: Any, workspace: Any, path: Path) -> None:
    """The whole window with the Analyze tab in front (``path``) and with Review (``*_review``).

    The Analyze tab is scrolled to its result panel (decision line, table, metrics).
    """
    from qtpy.QtWidgets import QApplication

    path.parent.mkdir(parents=True, exist_ok=True)
    review_path = path.with_name(f"{path.stem}_review{path.suffix}")
    analyze_area = workspace.tabs.widget(0)
    analyze_area.verticalScrollBar().setValue(analyze_area.verticalScrollBar().maximum())
    for tab, target in ((1, review_path), (0, path)):
        workspace.tabs.setCurrentIndex(tab)
        for _ in range(10):
            QApplication.processEvents()
        viewer.screenshot(str(target), canvas_only=False, flash=False)
        logger.info("screenshot saved to %s", target)


def open_workspace(
    models: dict[str, str], device: str = "auto", screenshot: Path | None = None
) -> int:
    """Open napari with the demo workspace; with ``screenshot``, save a PNG and close instead."""
    # torch's stack (and its triton) must load before napari creates its OpenGL canvas:
    # loading triton after it crashes under Mesa (see analyze.guard_triton_import).
    import napari
    import timm  # noqa: F401

    viewer = napari.Viewer(title="napari-pathreview demo")
    from qtpy.QtWidgets import QApplication

    analyze, _review = build_workspace(viewer, models, device=device)
    window = viewer.window._qt_window
    window.resize(1366, 768)  # a laptop screen: the dock must fit it
    window.show()
    for _ in range(10):
        QApplication.processEvents()
    fit_view(viewer, [analyze.result_layer])
    if screenshot is not None:
        _screenshots(viewer, analyze.workspace, screenshot)
        viewer.close()
        return 0
    napari.run()
    return 0
