"""The saved ROI of a review: its outline edited is the reviewer's work (asked about before
moving on, stored by Save), and its layer is refilled in place, never removed and re-added,
when the image comes back or a prediction arrives (each removal freezes the viewer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_helpers import answer_prompt, put_prediction, queue_folder, wait_loaded

from napari_pathreview.io.geojson import parse_geojson_rois
from napari_pathreview.review import ReviewStore

pytestmark = pytest.mark.viewer

TRIANGLE = np.array([[2.0, 2.0], [2.0, 20.0], [20.0, 20.0]])
SQUARE = np.array([[25.0, 25.0], [25.0, 35.0], [35.0, 35.0], [35.0, 25.0]])


def _back_to_saved_roi(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> tuple[Any, Any, list[Path]]:
    """A queue whose first image was reviewed with a two-shape ROI, then left and shown again:
    the form shows its "saved ROI" layer."""
    paths = queue_folder(tmp_path, 2, seed=5)
    viewer = make_napari_viewer()
    review = open_widget(viewer, "Review")
    review.reviewer.value = "dr_q"
    review.load_queue(paths[0].parent)
    wait_loaded(qtbot, review, paths[0])
    review.label.value = "malignant"
    viewer.add_shapes([TRIANGLE, SQUARE], shape_type="polygon", name="mine")
    review.roi_combo.value = "mine"
    assert review.save() is not None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    review.previous_item()
    wait_loaded(qtbot, review, paths[0])
    assert review.roi_combo.value == "saved ROI · case_0"
    return viewer, review, paths


def _saved_layer(viewer: Any) -> Any:
    return viewer.layers["saved ROI · case_0"]


def _move_vertex(layer: Any) -> None:
    """Drag the triangle's last vertex to (30, 40), as the vertex tool leaves the data."""
    moved = [np.asarray(shape, float).copy() for shape in layer.data]
    moved[0][2] = [30.0, 40.0]
    layer.data = moved


def _drag_vertex(layer: Any, shape: int, vertex: int, to: list[float]) -> None:
    """Drag a vertex to ``to`` with napari's vertex tool (direct select): the shape changes
    while the mouse moves, and the layer's ``data`` event comes once, at the release."""
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    layer.mode = "direct"
    layer.selected_data = {shape}
    start = tuple(layer.data_to_world(layer.data[shape][vertex]))
    end = tuple(layer.data_to_world(np.asarray(to, float)))
    mouse_press_callbacks(layer, read_only_mouse_event(type="mouse_press", position=start))
    drag = read_only_mouse_event(type="mouse_move", is_dragging=True, position=end)
    mouse_move_callbacks(layer, drag)
    release = read_only_mouse_event(type="mouse_release", is_dragging=True, position=end)
    mouse_release_callbacks(layer, release)


def test_an_untouched_saved_roi_is_no_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    _viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    assert not review.has_unsaved_changes()


def test_moving_a_vertex_of_the_saved_roi_is_an_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    _move_vertex(_saved_layer(viewer))
    assert review.has_unsaved_changes()


def test_the_saved_roi_s_outline_is_kept_between_checks_while_nothing_changes(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    kept = review.form_state().roi_geojson
    viewer.layers.selection.active = _saved_layer(viewer)  # each active-layer change checks
    viewer.layers.selection.active = review.image_layer
    assert not review.has_unsaved_changes()
    assert review.form_state().roi_geojson is kept  # not rebuilt vertex by vertex


def test_a_vertex_dragged_after_the_outline_was_kept_is_an_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    assert not review.has_unsaved_changes()  # the outline is built and kept
    layer = _saved_layer(viewer)
    _drag_vertex(layer, shape=0, vertex=2, to=[30.0, 40.0])
    assert [30.0, 40.0] in np.asarray(layer.data[0]).tolist()
    assert review.has_unsaved_changes()


def test_the_saved_roi_layer_moved_after_the_outline_was_kept_is_an_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    assert not review.has_unsaved_changes()
    _saved_layer(viewer).translate = (5.0, 0.0)  # over other pixels of the image now
    assert review.has_unsaved_changes()


def test_deleting_a_shape_of_the_saved_roi_is_an_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    layer = _saved_layer(viewer)
    layer.selected_data = {1}
    layer.remove_selected()
    assert review.has_unsaved_changes()


def test_adding_a_shape_to_the_saved_roi_is_an_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    layer = _saved_layer(viewer)
    layer.add([np.array([[5.0, 30.0], [5.0, 40.0], [15.0, 40.0]])], shape_type="polygon")
    assert review.has_unsaved_changes()


def test_next_asks_before_leaving_an_edited_saved_roi_and_save_stores_the_new_outline(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    _move_vertex(_saved_layer(viewer))
    answer_prompt("Save")
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    latest = ReviewStore().reviews(reviewer="dr_q")[-1]
    triangle, square = parse_geojson_rois(latest.roi_geojson)
    assert [30.0, 40.0] in triangle.data.tolist()
    np.testing.assert_allclose(square.data, SQUARE)


def test_saving_an_edited_saved_roi_makes_it_the_form_s_saved_state(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    _move_vertex(_saved_layer(viewer))
    assert review.save() is not None
    assert not review.has_unsaved_changes()


def test_a_prediction_arriving_keeps_an_edited_saved_roi(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    layer = _saved_layer(viewer)
    _move_vertex(layer)
    put_prediction(review.image_layer)
    assert [30.0, 40.0] in np.asarray(_saved_layer(viewer).data[0]).tolist()
    assert review.has_unsaved_changes()


def test_returning_to_an_image_refills_its_saved_roi_layer_in_place(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    first = _saved_layer(viewer)
    removed: list[str] = []
    viewer.layers.events.removed.connect(lambda event: removed.append(event.value.name))
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    review.previous_item()
    wait_loaded(qtbot, review, paths[0])
    assert _saved_layer(viewer) is first
    assert "saved ROI · case_0" not in removed
    assert first.visible and len(first.data) == 2
    assert not review.has_unsaved_changes()


def test_a_prediction_arriving_keeps_the_saved_roi_layer(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer, review, _paths = _back_to_saved_roi(qtbot, make_napari_viewer, open_widget, tmp_path)
    first = _saved_layer(viewer)
    removed: list[str] = []
    viewer.layers.events.removed.connect(lambda event: removed.append(event.value.name))
    put_prediction(review.image_layer)
    assert _saved_layer(viewer) is first and removed == []
    assert review.roi_combo.value == "saved ROI · case_0"
    assert not review.has_unsaved_changes()


def test_a_saved_roi_with_a_hole_shown_again_is_no_unsaved_change(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    from napari_pathreview.io.geojson import Roi, rois_to_geojson

    paths = queue_folder(tmp_path, 2, seed=5)
    outer = np.array([[2.0, 2.0], [2.0, 40.0], [30.0, 40.0], [30.0, 2.0]])
    hole = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0], [20.0, 10.0]])
    with ReviewStore() as store:
        sha = store.add_image(paths[0], "histology")
        roi = rois_to_geojson([Roi(outer, "polygon", {}, (hole,))])
        store.add_review(sha, "dr_q", "benign", None, roi_geojson=roi)
    viewer = make_napari_viewer()
    review = open_widget(viewer, "Review")
    review.reviewer.value = "dr_q"
    review.load_queue(paths[0].parent, index=0)  # not resumed past the reviewed image
    wait_loaded(qtbot, review, paths[0])
    assert not review.has_unsaved_changes()
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    review.previous_item()
    wait_loaded(qtbot, review, paths[0])
    assert not review.has_unsaved_changes()
    [shown] = parse_geojson_rois(review.form_state().roi_geojson)
    np.testing.assert_allclose(shown.holes[0], hole)
