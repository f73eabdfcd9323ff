"""The Analyze dock and a stack of frames: refused, naming the frame on screen and how to
classify it, never classified by a frame the user did not pick."""

from __future__ import annotations

from typing import Any

import numpy as np
from review_helpers import messages


def test_the_dock_refuses_a_stack_naming_the_frame_on_screen(
    make_napari_viewer: Any, open_widget: Any, mammogram_model: str, dicom_factory: Any
) -> None:
    rng = np.random.default_rng(0)
    path = dicom_factory("dbt.dcm", rng.integers(0, 4096, (5, 72, 64)).astype(np.uint16))
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    viewer.dims.set_current_step(0, 2)
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = layer.name
    seen = messages()
    assert widget.run() is None
    refusal = next(m for m in seen if "stack of 5 frames" in m)
    assert "frame 2 on screen" in refusal
    assert f"pathreview predict {path.resolve()} --frame 2 --model {mammogram_model}" in refusal
    assert "Split Stack" in refusal
    assert [lay.name for lay in viewer.layers] == [layer.name] and widget.result is None


def test_the_dock_refuses_a_stack_of_rgb_frames_naming_the_frame_on_screen(
    make_napari_viewer: Any, open_widget: Any, histology_model: str, colour_dicom_factory: Any
) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 72, 64, 3), dtype=np.uint8)
    path = colour_dicom_factory("photos.dcm", frames)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    viewer.dims.set_current_step(0, 1)
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = layer.name
    seen = messages()
    assert widget.run() is None
    refusal = next(m for m in seen if "stack of 3 frames" in m)
    assert f"pathreview predict {path.resolve()} --frame 1 --model {histology_model}" in refusal
    assert widget.result is None
