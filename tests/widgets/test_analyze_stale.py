"""The Analyze panel shows the chosen image's result only, and its own layers are not images.

A pathologist moves between films and patches: numbers or an IoU left from the previous image
would read as the new one's, and a CAM the dock adds must never be taken for an image to run.
"""

from __future__ import annotations

from typing import Any

import pytest

from napari_pathreview.widgets._results import cam_layer_of

pytestmark = pytest.mark.viewer

MIAS = "mias/mdb028.pgm"


def _image(layers: list[Any]) -> Any:
    from napari.layers import Image

    return next(layer for layer in layers if isinstance(layer, Image))


def test_auto_run_with_a_cam_runs_once_and_never_takes_the_cam_for_an_image(
    qtbot: Any, open_sample: Any, open_widget: Any, mammogram_model: str
) -> None:
    viewer, layers = open_sample(MIAS)
    image = _image(layers)
    widget = open_widget(viewer, "Analyze")
    widget.auto_run.value = True
    widget.cam_method.value = "gradcam"
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=60_000)
    assert widget.worker is worker  # showing the result started no run on the new CAM layer
    assert tuple(widget.image_combo.choices) == (image.name,)
    assert widget.image_combo.value == image.name
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=60_000)
    cams = [layer.name for layer in viewer.layers if layer.name.startswith("CAM")]
    assert cams == [cam_layer_of(viewer, image).name]
    assert widget.result_layer.name == image.name
