"""The Analyze panel shows the chosen image's result only, and its own layers are not images.

A pathologist moves between films and patches: numbers or an IoU left from the previous image
would read as the new one's, and a CAM the dock adds must never be taken for an image to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from napari_pathreview.widgets._results import cam_layer_of

pytestmark = pytest.mark.viewer

MIAS = "mias/mdb028.pgm"
OTHER_FILM = "mias/mdb001.pgm"  # a benign mass: the reader adds its ROI too


def _image(layers: list[Any]) -> Any:
    from napari.layers import Image

    return next(layer for layer in layers if isinstance(layer, Image))


@pytest.fixture
def two_films(
    open_sample: Any, open_widget: Any, mammogram_model: str, shared_data: Path
) -> tuple[Any, Any, Any]:
    """Two MIAS films in one viewer (each with its ROI), the Analyze dock on the first."""
    viewer, layers = open_sample(MIAS)
    first = _image(layers)
    second = _image(viewer.open(shared_data / OTHER_FILM, plugin="napari-pathreview"))
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = first.name
    return widget, first, second


def test_choosing_another_image_clears_the_result_and_scores_no_cam_against_its_roi(
    qtbot: Any, two_films: tuple[Any, Any, Any]
) -> None:
    widget, _first, second = two_films
    widget.run()
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=60_000)
    assert widget.roi_scores is not None  # the first film's CAM against its own ROI

    widget.image_combo.value = second.name
    assert widget.roi_combo.value == f"{second.name} ROI"
    assert widget.result is None and widget.roi_scores is None
    assert widget.table.rowCount() == 0 and widget.decision.text() == ""
    assert "—" in widget.roi_label.text()


def test_a_result_that_arrives_after_the_picker_moved_on_is_shown_with_its_own_image(
    qtbot: Any, two_films: tuple[Any, Any, Any], slow_loader: Any
) -> None:
    widget, first, second = two_films
    widget.viewer.layers.selection.active = widget.viewer.layers[first.name]
    widget.cam_method.value = "none"  # no CAM layer is added: the selection does not move
    widget.load_model = slow_loader(0.5)
    widget.run()
    widget.image_combo.value = second.name  # the user looks at the next film meanwhile
    qtbot.waitUntil(lambda: widget.result is not None, timeout=60_000)
    assert widget.image_combo.value == first.name
    assert widget.roi_combo.value == f"{first.name} ROI"
    assert widget.table.rowCount() == 3


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


def test_a_run_cancelled_for_the_next_image_leaves_the_new_run_s_buttons_and_status(
    qtbot: Any, two_films: tuple[Any, Any, Any], slow_loader: Any
) -> None:
    widget, _first, second = two_films
    widget.load_model = slow_loader(0.5)
    cancelled = widget.run()
    widget.load_model = slow_loader(5.0)  # the next film's run is still going when we look
    with qtbot.waitSignal(cancelled.finished, timeout=30_000):
        current = widget.follow(second.name, run=True)  # what the work queue does on Next
    assert current is not cancelled and current.is_running
    assert widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
    assert widget.status.text() != "cancelled"
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=30_000)


def test_a_hand_drawn_roi_named_for_one_film_is_not_kept_as_the_next_films_roi(
    two_films: tuple[Any, Any, Any],
) -> None:
    widget, first, second = two_films
    square = [[100.0, 100.0], [100.0, 300.0], [300.0, 300.0], [300.0, 100.0]]
    widget.viewer.add_shapes([square], shape_type="polygon", name=f"{first.name} - Shapes")
    widget.viewer.add_shapes([square], shape_type="polygon", name="Shapes")  # nobody's
    widget.roi_combo.value = f"{first.name} - Shapes"

    widget.image_combo.value = second.name
    assert widget.roi_combo.value == f"{second.name} ROI"
    assert f"{first.name} - Shapes" not in widget.roi_combo.choices
    assert "Shapes" in widget.roi_combo.choices  # drawn by hand for no image: offered to all
