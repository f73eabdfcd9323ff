"""The holes layer of a QuPath ROI opened in napari comes and goes with its ROI layer.

The ROI is QuPath's 20×20 square with a 10×10 hole, in ``tumour.geojson`` beside its 32×32
image ``tumour.png``, opened through the plugin's reader as a user does, with no PathReview
dock open unless a test says so: the reader, not a dock, sets up the holes layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.viewer

SQUARE_WITH_HOLE = {
    "type": "Feature",
    "properties": {"classification": {"name": "Tumor"}},
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]],
            [[5, 5], [5, 15], [15, 15], [15, 5], [5, 5]],
        ],
    },
}


def _open(viewer: Any, tmp_path: Path, **kwargs: Any) -> Any:
    """Open ``tumour.png``, then ``tumour.geojson`` with ``kwargs``; returns the ROI layer."""
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / "tumour.png")
    document = {"type": "FeatureCollection", "features": [SQUARE_WITH_HOLE]}
    (tmp_path / "tumour.geojson").write_text(json.dumps(document))
    viewer.open(tmp_path / "tumour.png", plugin="napari-pathreview")
    *_, roi = viewer.open(tmp_path / "tumour.geojson", plugin="napari-pathreview", **kwargs)
    return roi


def _names(viewer: Any) -> list[str]:
    return [layer.name for layer in viewer.layers]


def test_deleting_the_roi_layer_with_no_dock_open_deletes_its_holes_layer(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """The holes layer used to stay, outlining holes of a region no longer there."""
    viewer = make_napari_viewer()
    roi = _open(viewer, tmp_path)
    assert _names(viewer) == ["tumour", f"{roi.name} holes", roi.name]
    viewer.layers.remove(roi)
    assert _names(viewer) == ["tumour"]


def test_an_roi_layer_deleted_and_added_back_gets_its_holes_layer_back(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    roi = _open(viewer, tmp_path)
    viewer.layers.remove(roi)
    assert f"{roi.name} holes" not in viewer.layers
    viewer.add_layer(roi)
    roi.data = [roi.data[0] + [4.0, 6.0]]
    assert _names(viewer) == ["tumour", f"{roi.name} holes", roi.name]
    [ring] = viewer.layers[f"{roi.name} holes"].data
    np.testing.assert_allclose(ring.min(axis=0), [8.5, 10.5])  # it follows the ROI again


def test_deleting_the_holes_layer_alone_keeps_the_roi_layer_and_its_hole(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """The holes layer is a display: deleted, it stays deleted, and the ROI keeps its hole."""
    from napari_pathreview.widgets._results import roi_mask

    viewer = make_napari_viewer()
    roi = _open(viewer, tmp_path)
    image = viewer.layers["tumour"]
    viewer.layers.remove(f"{roi.name} holes")
    roi.data = [roi.data[0] + 12.0]  # a drag
    assert _names(viewer) == ["tumour", roi.name]
    assert roi_mask(roi, image).sum() == 300  # 20×20 less the 10×10 hole, moved along


@pytest.mark.parametrize("first", ["ROI", "holes"])
def test_deleting_the_roi_and_holes_layers_together_removes_both(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path, first: str
) -> None:
    """napari's delete button removes the selected layers one by one, in set order, in one
    batch; with a dock open, the holes layer was removed under that loop (ValueError)."""
    viewer = make_napari_viewer()
    roi = _open(viewer, tmp_path)
    open_widget(viewer, "Analyze")
    holes = viewer.layers[f"{roi.name} holes"]
    with viewer.layers.batched_update():  # what LayerList.remove_selected does
        for layer in (roi, holes) if first == "ROI" else (holes, roi):
            viewer.layers.remove(layer)
    assert _names(viewer) == ["tumour"]


def test_viewer_open_names_the_roi_layer_and_its_holes_layer_after_it(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """napari applies ``name=`` to the layers a reader returns as LayerData only."""
    viewer = make_napari_viewer()
    roi = _open(viewer, tmp_path, name="lesion")
    assert roi.name == "lesion"
    assert _names(viewer) == ["tumour", "lesion holes", "lesion"]


def test_viewer_open_s_layer_arguments_reach_the_roi_layer_and_its_holes_layer(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    roi = _open(viewer, tmp_path, opacity=0.4, edge_width=3)
    holes = viewer.layers[f"{roi.name} holes"]
    assert roi.opacity == holes.opacity == pytest.approx(0.4)
    np.testing.assert_allclose(holes.edge_width, [3.0])  # at its region's edge width


def _link_callbacks(layer: Any) -> int:
    """The callbacks the holes layers' follower has on ``layer``'s events (napari holds a
    method as ``(ref, name)``)."""
    from napari_pathreview.widgets._hole_outlines import _Link

    callbacks = [c for e in layer.events.emitters.values() for c in e.callbacks]
    return sum(isinstance(c, tuple) and isinstance(c[0](), _Link) for c in callbacks)


def test_opening_and_deleting_rois_leaves_the_viewer_one_follower(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """The reader connects the holes layers' follower to the viewer once, however many
    holed ROIs come and go; a deleted ROI layer keeps nothing of it connected."""
    from napari_pathreview.widgets import _hole_outlines

    viewer = make_napari_viewer()
    for _ in range(3):
        roi = _open(viewer, tmp_path)
        assert _link_callbacks(roi) > 0
        viewer.layers.remove(roi)
        assert _link_callbacks(roi) == 0
    events = viewer.layers.events
    followers = [
        (events.inserted, _hole_outlines._inserted),
        (events.removed, _hole_outlines._removed),
        (events.begin_batch, _hole_outlines._batch_began),
        (events.end_batch, _hole_outlines._batch_ended),
    ]
    for emitter, follower in followers:
        assert list(emitter.callbacks).count(follower) == 1
