"""An ROI layer made without units over a µm- or mm-scaled image takes the units it is drawn in.

A plain ``viewer.add_shapes()`` is in "pixel"; beside a µm image napari found the layers'
units inconsistent and warned "Inconsistent units across layers" again on every later layer
change (each CAM, each queue step), with no unit on the scale bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_pathreview.widgets._results import add_cam_layer, is_image

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"
MIAS = "mias/mdb028.pgm"
INCONSISTENT = "Inconsistent units across layers"


def _units(layer: Any) -> list[str]:
    return [str(unit) for unit in layer.units]


def _warnings() -> list[str]:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


@pytest.mark.parametrize("dock", ["Analyze", "Review"])
def test_a_plain_shapes_layer_over_a_micrometre_image_is_in_micrometres(
    open_sample: Any, open_widget: Any, dock: str
) -> None:
    viewer, [image] = open_sample(BREAKHIS)
    open_widget(viewer, dock)
    shapes = viewer.add_shapes()  # scale 1, napari's default "pixel" units
    assert _units(shapes) == _units(image) == ["micrometer", "micrometer"]
    assert [str(u) for u in viewer.layers.extent.units] == ["micrometer", "micrometer"]


def test_later_layer_changes_raise_no_inconsistent_units_warning(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, [image] = open_sample(BREAKHIS)
    open_widget(viewer, "Analyze")
    viewer.add_shapes()
    seen = _warnings()
    add_cam_layer(viewer, image, np.random.default_rng(0).random((23, 35)))
    assert not [m for m in seen if INCONSISTENT in m]


def test_a_labels_roi_on_the_image_grid_takes_the_image_s_units(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, [image] = open_sample(BREAKHIS)
    open_widget(viewer, "Analyze")
    labels = viewer.add_labels(np.zeros(image.data.shape[:2], np.uint8), scale=image.scale)
    assert _units(labels) == ["micrometer", "micrometer"]


def test_a_scale_1_roi_beside_a_film_and_a_slide_takes_the_world_s_unit_not_the_film_s(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    _, opened = open_sample(MIAS)
    film = next(layer for layer in opened if is_image(layer))
    assert _units(film) == ["millimeter", "millimeter"]
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = film.name
    shapes = viewer.add_shapes()  # drawn in world coordinates, whose unit is the slide's µm
    assert _units(shapes) == ["micrometer", "micrometer"]


def test_an_roi_layer_with_units_of_its_own_keeps_them(open_sample: Any, open_widget: Any) -> None:
    viewer, _ = open_sample(BREAKHIS)
    open_widget(viewer, "Analyze")
    shapes = viewer.add_shapes(units=("nm", "nm"))
    assert _units(shapes) == ["nanometer", "nanometer"]
