"""Docks opened, closed and reopened from Plugins ▸ PathReview: a closed panel stops acting."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from qtpy.QtWidgets import QApplication

from napari_pathreview.widgets.review import DISAGREE_KEY

pytestmark = pytest.mark.viewer

PLUGIN = "napari-pathreview"
WORKSPACE = "Workspace (Analyze + Review)"


@pytest.fixture
def viewer(make_napari_viewer: Any) -> Any:
    """A viewer showing a BreaKHis patch the model has classified (what Alt+A/D act on)."""
    viewer = make_napari_viewer()
    (image,) = viewer.open_sample(PLUGIN, "breakhis_malignant")
    prediction = {"classes": ["benign", "malignant"], "label": "malignant", "threshold": 0.5}
    prediction["probabilities"] = {"benign": 0.2, "malignant": 0.8}
    image.metadata = {"pathreview": {**image.metadata["pathreview"], "prediction": prediction}}
    return viewer


def _press(viewer: Any, key: str) -> None:
    """What pressing ``key`` over the canvas calls: the viewer's binding for it."""
    keys = {str(k).replace("+", "-"): f for k, f in viewer.keymap.items()}
    keys[key](viewer)


def _close(viewer: Any, dock: Any) -> None:
    """The dock's × button (``destroyOnClose``): the panel is unparented, the dock deleted."""
    viewer.window.remove_dock_widget(dock)
    for _ in range(3):
        QApplication.processEvents()


def test_a_shortcut_pressed_after_the_review_dock_is_closed_leaves_the_closed_form_alone(
    viewer: Any,
) -> None:
    dock, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    assert review.agreement.value == "agree"
    _close(viewer, dock)
    _press(viewer, DISAGREE_KEY)
    assert review.agreement.value == "agree"


def test_closing_a_second_review_dock_gives_the_shortcuts_back_to_the_workspace(
    viewer: Any,
) -> None:
    _dock, workspace = viewer.window.add_plugin_dock_widget(PLUGIN, WORKSPACE)
    dock, _review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    _close(viewer, dock)
    _press(viewer, DISAGREE_KEY)
    assert workspace.review.agreement.value == "disagree"


def test_a_hidden_review_dock_does_not_take_the_shortcuts(viewer: Any) -> None:
    _dock, workspace = viewer.window.add_plugin_dock_widget(PLUGIN, WORKSPACE)
    dock, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    dock.close()  # the dock's "hide this panel" button
    _press(viewer, DISAGREE_KEY)
    assert (review.agreement.value, workspace.review.agreement.value) == ("agree", "disagree")


@pytest.mark.parametrize("name", ["Review", WORKSPACE])
def test_a_closed_dock_is_freed(viewer: Any, name: str) -> None:
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    freed = weakref.ref(widget)
    del widget
    _close(viewer, dock)
    del dock
    gc.collect()
    assert freed() is None
