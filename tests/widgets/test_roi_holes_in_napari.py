"""A QuPath ROI with a hole keeps its hole in napari, though napari Shapes cannot draw it.

The ROI is QuPath's 20×20 square (0, 0)–(20, 20) with the 10×10 hole (5, 5)–(15, 15), opened
through the plugin's reader beside its 32×32 image: the Analyze dock scores against the same
300 pixels as ``pathreview explain --roi``, and saving the layer or a review keeps the hole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from napari_pathreview.review import ReviewStore
from napari_pathreview.widgets._results import roi_mask

pytestmark = pytest.mark.viewer

OUTER = [[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]
HOLE = [[5, 5], [5, 15], [15, 15], [15, 5], [5, 5]]
SOLID = [[24, 24], [30, 24], [30, 30], [24, 30], [24, 24]]


def _feature(*rings: list[list[int]]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": list(rings)},
    }


def _open(viewer: Any, tmp_path: Path, *features: dict[str, Any]) -> tuple[Any, Any]:
    """The image ``tumour.png`` and, beside it, ``tumour.geojson`` as QuPath exports them."""
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / "tumour.png")
    document = {"type": "FeatureCollection", "features": list(features)}
    (tmp_path / "tumour.geojson").write_text(json.dumps(document))
    [image] = viewer.open(tmp_path / "tumour.png", plugin="napari-pathreview")
    *_outlines, roi = viewer.open(tmp_path / "tumour.geojson", plugin="napari-pathreview")
    return image, roi


def _rings(path: Path) -> list[list[list[list[float]]]]:
    document = json.loads(path.read_text())
    return [feature["geometry"]["coordinates"] for feature in document["features"]]


def test_the_analyze_dock_scores_against_the_roi_without_its_hole(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    widget = open_widget(viewer, "Analyze")
    widget.roi_combo.value = roi.name
    mask = roi_mask(roi, image)  # what the dock's live IoU / Dice is computed against
    expected = np.zeros((32, 32), bool)
    expected[0:20, 0:20] = True
    expected[5:15, 5:15] = False
    assert mask.sum() == 300
    np.testing.assert_array_equal(mask, expected)


def test_saving_the_layer_writes_the_hole_back(make_napari_viewer: Any, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    saved = tmp_path / "saved.geojson"
    roi.save(str(saved), plugin="napari-pathreview")
    [[outer, hole]] = _rings(saved)
    np.testing.assert_allclose(outer, OUTER)
    np.testing.assert_allclose(hole, HOLE)  # QuPath's corner convention, as read
    assert "pathreview_roi_id" not in json.loads(saved.read_text())["features"][0]["properties"]


def test_deleting_another_shape_keeps_the_hole_on_its_own_shape(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(SOLID), _feature(OUTER, HOLE))
    roi.selected_data = {0}
    roi.remove_selected()
    assert roi_mask(roi, image).sum() == 300
    saved = tmp_path / "saved.geojson"
    roi.save(str(saved), plugin="napari-pathreview")
    [[outer, hole]] = _rings(saved)
    np.testing.assert_allclose(outer, OUTER)
    np.testing.assert_allclose(hole, HOLE)


def test_a_shape_drawn_after_opening_gets_no_hole(make_napari_viewer: Any, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    # drawn over the hole (pixels 2..17): napari's default would give it the last shape's id
    roi.add_rectangles(np.array([[1.5, 1.5], [1.5, 17.5], [17.5, 17.5], [17.5, 1.5]]))
    assert roi_mask(roi, image).sum() == 400  # the new square fills the other's hole
    saved = tmp_path / "saved.geojson"
    roi.save(str(saved), plugin="napari-pathreview")
    assert [len(rings) for rings in _rings(saved)] == [2, 1]


def _notifications() -> list[str]:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def test_a_region_dragged_as_a_whole_takes_its_hole_along(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """Dragging used to leave the hole behind, where it fell outside and was dropped."""
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    roi.data = [roi.data[0] + 12.0]  # what napari's drag does: every vertex moved alike
    expected = np.zeros((32, 32), bool)
    expected[12:32, 12:32] = True
    expected[17:27, 17:27] = False
    np.testing.assert_array_equal(roi_mask(roi, image), expected)


def test_a_hole_follows_two_drags_into_the_saved_file(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    roi.data = [roi.data[0] + [4.0, 0.0]]
    roi.data = [roi.data[0] + [0.0, 6.0]]
    saved = tmp_path / "saved.geojson"
    roi.save(str(saved), plugin="napari-pathreview")
    [[outer, hole]] = _rings(saved)  # [x, y]: x = column, moved 6; y = row, moved 4
    np.testing.assert_allclose(outer, np.asarray(OUTER) + [6, 4])
    np.testing.assert_allclose(hole, np.asarray(HOLE) + [6, 4])


def _far_corner_pulled_in(square: np.ndarray) -> np.ndarray:
    """The square reshaped: its corner far from (0, 0) dragged alone to (4, 4), leaving the
    hole outside (a resize, every vertex alike, would take the hole along)."""
    reshaped = square.copy()
    reshaped[np.argmax(square.sum(axis=1))] = 4.0
    return reshaped


def test_a_hole_outside_its_reshaped_region_is_dropped_with_a_notification_naming_it(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(SOLID), _feature(OUTER, HOLE))
    seen = _notifications()
    roi.data = [roi.data[0], _far_corner_pulled_in(roi.data[1])]
    assert roi_mask(roi, image)[0:4, 0:4].all()  # the hole is not cut out of it
    [message] = [m for m in seen if "hole" in m]
    assert f"{roi.name!r}, shape 2 (Tumor)" in message and "dropped" in message
    roi_mask(roi, image)
    assert len([m for m in seen if "hole" in m]) == 1  # told once: the hole is gone


def test_a_review_stores_the_roi_with_its_hole(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    review = open_widget(viewer, "Review")
    review.reviewer.value = "dr_hole"
    review.label.value = "benign"
    review.roi_combo.value = roi.name
    assert review.save() is not None
    [record] = ReviewStore().reviews(reviewer="dr_hole")
    [[outer, hole]] = [f["geometry"]["coordinates"] for f in record.roi_geojson["features"]]
    np.testing.assert_allclose(outer, OUTER)
    np.testing.assert_allclose(hole, HOLE)


def _outlines(viewer: Any, roi: Any) -> Any:
    """The layer outlining ``roi``'s holes: the one just below it."""
    below = viewer.layers[viewer.layers.index(roi) - 1]
    assert below.name == f"{roi.name} holes"
    return below


def test_the_hole_is_outlined_unfilled_just_below_its_roi(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """napari drew the region's outline only: the lumen it excludes looked included."""
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(SOLID), _feature(OUTER, HOLE))
    outlines = _outlines(viewer, roi)
    [ring] = outlines.data  # QuPath's corners (5, 5)-(15, 15) are napari's 4.5-14.5
    np.testing.assert_allclose(
        sorted(map(tuple, ring)), [(4.5, 4.5), (4.5, 14.5), (14.5, 4.5), (14.5, 14.5)]
    )
    assert outlines.shape_type == ["polygon"]
    np.testing.assert_allclose(outlines.face_color[0], [0, 0, 0, 0])
    np.testing.assert_allclose(outlines.edge_color[0], [1, 0, 1, 1])  # not the region's lime
    np.testing.assert_allclose(outlines.scale, roi.scale)
    assert viewer.layers.selection.active is roi  # the ROI stays the layer being edited


def test_a_region_dragged_as_a_whole_takes_its_hole_outline_along(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    roi.data = [roi.data[0] + [4.0, 6.0]]
    [ring] = _outlines(viewer, roi).data
    np.testing.assert_allclose(ring.min(axis=0), [8.5, 10.5])
    np.testing.assert_allclose(ring.max(axis=0), [18.5, 20.5])


def test_a_hole_dropped_from_its_reshaped_region_is_no_longer_outlined(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    roi.data = [_far_corner_pulled_in(roi.data[0])]
    assert len(_outlines(viewer, roi).data) == 0


def test_an_edit_made_on_the_hole_outlines_is_undone(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    outlines = _outlines(viewer, roi)
    drawn = outlines.data[0].copy()
    outlines.data = [drawn + 3.0]
    np.testing.assert_allclose(outlines.data[0], drawn)


def test_the_hole_outlines_are_not_offered_as_an_roi(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    widget = open_widget(viewer, "Analyze")
    assert f"{roi.name} holes" not in widget.roi_combo.choices
    assert roi.name in widget.roi_combo.choices


def test_saving_the_hole_outlines_is_refused_naming_the_roi_layer(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    from napari_pathreview._writer import write_shapes_geojson
    from napari_pathreview.errors import LayerExportError

    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    data, attributes, _kind = _outlines(viewer, roi).as_layer_data_tuple()
    with pytest.raises(LayerExportError, match=re.escape(f"holes of ROI layer {roi.name!r}")):
        write_shapes_geojson(str(tmp_path / "holes.geojson"), data, attributes)
    assert not (tmp_path / "holes.geojson").exists()


def test_removing_the_roi_layer_with_a_dock_open_removes_its_hole_outlines(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    """napari tells a layer nothing when it leaves a viewer: the dock follows the layer list."""
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    open_widget(viewer, "Analyze")
    viewer.layers.remove(roi)
    assert [layer.name for layer in viewer.layers] == [image.name]


def test_a_review_s_saved_roi_shows_its_hole_and_a_session_keeps_it_once(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    from napari_pathreview.widgets._review_roi import show_saved_roi
    from napari_pathreview.widgets._session import capture_layers

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 32)), name="film")
    geojson = {"type": "FeatureCollection", "features": [_feature(OUTER, HOLE)]}
    roi = show_saved_roi(viewer, image, geojson)
    assert len(_outlines(viewer, roi).data) == 1
    entries, _arrays = capture_layers(viewer)
    assert [entry["name"] for entry in entries if entry["type"] == "roi"] == [roi.name]


def _hole_box(outlines: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (row, col) corners of the one hole outlined."""
    [ring] = outlines.data
    return ring.min(axis=0), ring.max(axis=0)


def test_the_outlines_land_in_the_viewer_that_opened_the_file(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """The reader used to draw them in napari's current viewer, whichever opened the file."""
    from napari import current_viewer

    opening = make_napari_viewer()
    other = make_napari_viewer()
    assert current_viewer() is other
    _, roi = _open(opening, tmp_path, _feature(OUTER, HOLE))
    np.testing.assert_allclose(_hole_box(_outlines(opening, roi)), [[4.5, 4.5], [14.5, 14.5]])
    assert list(other.layers) == []


def test_layers_built_before_a_viewer_takes_them_come_linked_to_their_outlines(
    tmp_path: Path,
) -> None:
    """The review queue builds an item's layers off the GUI thread, then adds them."""
    from napari_pathreview._reader import read_paths
    from napari_pathreview.widgets._hole_outlines import layers_with_hole_outlines

    path = tmp_path / "tumour.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [_feature(OUTER, HOLE)]}))
    outlines, roi = layers_with_hole_outlines(read_paths(str(path)))
    assert outlines.name == f"{roi.name} holes"
    roi.data = [roi.data[0] + [2.0, 3.0]]
    np.testing.assert_allclose(_hole_box(outlines), [[6.5, 7.5], [16.5, 17.5]])


def _drag_region(layer: Any, start: list[float], end: list[float]) -> Any:
    """Drag the region under ``start`` to ``end`` with napari's select tool; returns the
    release, to send when the test has looked at the layers mid-drag."""
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    layer.mode = "select"
    start_w, end_w = tuple(layer.data_to_world(start)), tuple(layer.data_to_world(end))
    mouse_press_callbacks(layer, read_only_mouse_event(type="mouse_press", position=start_w))
    drag = read_only_mouse_event(type="mouse_move", is_dragging=True, position=end_w)
    mouse_move_callbacks(layer, drag)
    release = read_only_mouse_event(type="mouse_release", is_dragging=True, position=end_w)
    return lambda: mouse_release_callbacks(layer, release)


def test_a_dragged_region_s_hole_outline_follows_before_the_mouse_is_released(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    image, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    release = _drag_region(roi, [2.0, 2.0], [6.0, 9.0])
    np.testing.assert_allclose(roi.data[0].min(axis=0), [3.5, 6.5])  # napari moved it already
    np.testing.assert_allclose(_hole_box(_outlines(viewer, roi)), [[8.5, 11.5], [18.5, 21.5]])
    release()
    np.testing.assert_allclose(_hole_box(_outlines(viewer, roi)), [[8.5, 11.5], [18.5, 21.5]])
    expected = np.zeros((32, 32), bool)
    expected[4:24, 7:27] = True
    expected[9:19, 12:22] = False
    np.testing.assert_array_equal(roi_mask(roi, image), expected)  # the IoU's mask agrees


def test_deleting_a_region_removes_its_hole_outline_and_its_hole(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE), _feature(SOLID))
    roi.selected_data = {0}
    roi.remove_selected()
    assert len(_outlines(viewer, roi).data) == 0
    saved = tmp_path / "saved.geojson"
    roi.save(str(saved), plugin="napari-pathreview")
    assert [len(rings) for rings in _rings(saved)] == [1]


def test_a_region_resized_as_a_whole_saves_its_hole_resized(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """napari's selection box resizes every vertex by one map: the hole takes it too."""
    viewer = make_napari_viewer()
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    corner = np.array([-0.5, -0.5])  # QuPath's (0, 0), in napari's pixel centres
    roi.data = [corner + (roi.data[0] - corner) * 1.5]
    np.testing.assert_allclose(_hole_box(_outlines(viewer, roi)), [[7.0, 7.0], [22.0, 22.0]])
    saved = tmp_path / "saved.geojson"
    roi.save(str(saved), plugin="napari-pathreview")
    [[outer, hole]] = _rings(saved)
    np.testing.assert_allclose(outer, np.asarray(OUTER) * 1.5)
    np.testing.assert_allclose(hole, np.asarray(HOLE) * 1.5)


def test_a_file_opened_with_a_dock_open_gets_one_hole_outline_layer(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    open_widget(viewer, "Review")  # follows the layer list before the file arrives
    _, roi = _open(viewer, tmp_path, _feature(OUTER, HOLE))
    assert [layer.name for layer in viewer.layers].count(f"{roi.name} holes") == 1
    assert viewer.layers.selection.active is roi
    viewer.layers.remove(roi)
    assert f"{roi.name} holes" not in viewer.layers
