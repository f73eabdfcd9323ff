"""The Analyze widget offers the shared choice lists: every CAM method, device and TTA mode."""

from __future__ import annotations

from typing import Any

import pytest

from napari_pathreview.explain.methods import CAM_METHOD_NAMES
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.tta import TTA_MODES

pytestmark = pytest.mark.viewer


def test_analyze_widget_offers_every_cam_method_device_and_tta_mode(
    make_napari_viewer: Any, open_widget: Any
) -> None:
    widget = open_widget(make_napari_viewer(), "Analyze")
    assert tuple(widget.cam_method.choices) == (*CAM_METHOD_NAMES, "none")
    assert "eigengradcam" in widget.cam_method.choices
    assert tuple(widget.device.choices) == DEVICES
    assert "mps" in widget.device.choices
    assert tuple(widget.tta.choices) == TTA_MODES
