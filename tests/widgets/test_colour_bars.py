"""Colour bars of CAM and tile-probability maps: one bar, the one for the map in view.

napari draws every layer's colour bar in the same corner, without a title; with a CAM on each
of two images the bars stacked and could not be told apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_pathreview.widgets._results import add_cam_layer

pytestmark = pytest.mark.viewer

MALIGNANT = "breakhis/SOB_M_DC-14-2523-40-010.png"
BENIGN = "breakhis/SOB_B_F-14-9133-40-001.png"


def _two_cams(open_sample: Any, open_widget: Any) -> tuple[Any, list[Any], list[Any]]:
    """Two BreaKHis images, each with its CAM, and the Analyze dock open."""
    viewer, first = open_sample(MALIGNANT)
    _, second = open_sample(BENIGN)
    images = [first[0], second[0]]
    open_widget(viewer, "Analyze")
    rng = np.random.default_rng(0)
    cams = [add_cam_layer(viewer, image, rng.random((23, 35))) for image in images]
    return viewer, images, cams


def _bars(viewer: Any) -> list[str]:
    return [
        layer.name
        for layer in viewer.layers
        if getattr(layer, "colorbar", None) and layer.colorbar.visible
    ]


def test_selecting_an_image_shows_only_its_own_map_s_colour_bar(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, images, cams = _two_cams(open_sample, open_widget)
    for image, cam in zip(images, cams, strict=True):
        viewer.layers.selection.active = image
        assert _bars(viewer) == [cam.name]


def test_hiding_or_removing_the_map_in_view_hands_the_colour_bar_to_the_one_left(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, images, cams = _two_cams(open_sample, open_widget)
    viewer.layers.selection.active = cams[1]
    assert _bars(viewer) == [cams[1].name]
    cams[1].visible = False
    assert _bars(viewer) == [cams[0].name]
    viewer.layers.selection.active = images[1]  # its map is hidden: the visible one keeps the bar
    assert _bars(viewer) == [cams[0].name]
    viewer.layers.remove(cams[0])
    assert _bars(viewer) == []


def _live(callback: Any) -> bool:
    """napari holds a method weakly, as ``(ref, name)``; a freed panel's is dead, not called."""
    return not isinstance(callback, tuple) or callback[0]() is not None


def _callbacks(viewer: Any, layer: Any) -> int:
    """The live callbacks on the events a colour-bar follower listens to."""
    emitters = (
        viewer.layers.events.inserted,
        viewer.layers.events.removed,
        viewer.layers.events.reordered,
        viewer.layers.selection.events.active,
        layer.events.visible,
    )
    return sum(_live(callback) for emitter in emitters for callback in emitter.callbacks)


@pytest.mark.parametrize("dock_name", ["Analyze", "Workspace (Analyze + Review)"])
def test_closing_the_analyze_dock_disconnects_its_colour_bar_callbacks(
    open_sample: Any, dock_name: str
) -> None:
    """Each Analyze dock opened and closed used to leave its callbacks connected to the viewer.

    The viewer keeps one thing past the first dock: the ROI hole-outline follower
    (``widgets._hole_outlines.show_holes``), connected once per viewer so that outlines follow
    their ROIs whether or not a dock is open; nothing grows with each dock opened and closed.
    """
    import gc

    from qtpy.QtWidgets import QApplication

    from napari_pathreview.widgets import _hole_outlines

    viewer, (image, *_) = open_sample(MALIGNANT)
    before = _callbacks(viewer, image)
    for _ in range(3):
        dock, _widget = viewer.window.add_plugin_dock_widget("napari-pathreview", dock_name)
        assert _callbacks(viewer, image) > before
        viewer.window.remove_dock_widget(dock)  # the dock's × button
        del dock, _widget
        QApplication.processEvents()
        gc.collect()
    followers = [_hole_outlines._inserted, _hole_outlines._removed]
    layer_events = (viewer.layers.events.inserted, viewer.layers.events.removed)
    kept = [c for emitter in layer_events for c in emitter.callbacks if c in followers]
    assert len(kept) == 2  # the follower, once, however many docks came and went
    assert _callbacks(viewer, image) == before + len(kept)
