"""A saved session's layers, restored entry by entry as the docks' settings are: a bad entry or
key is named (its index, type and name) with the session file in napari's notification, a layer
whose file is gone or whose saved arrays no longer fit its image is left out, and the other
layers and settings are restored.

Sessions are real files written by the workspace dock (Plugins ▸ PathReview) over real PNGs,
then edited or their images replaced as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from review_helpers import messages

from napari_pathreview.widgets._results import add_cam_layer, cam_layer_of

pytestmark = pytest.mark.viewer

WORKSPACE = "Workspace (Analyze + Review)"


def _png(path: Path, rows: int, cols: int, seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(40, 220, (rows, cols, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _saved(viewer: Any, open_widget: Any, tmp_path: Path) -> Path:
    """Images ``a`` (32×48, with a CAM) and ``b`` (40×40), a drawn ROI ``mine`` and Analyze's
    threshold at 0.7, saved by the dock: layers[0] a, [1] a's CAM, [2] b, [3] mine."""
    workspace = open_widget(viewer, WORKSPACE)
    [a] = viewer.open(_png(tmp_path / "a.png", 32, 48), plugin="napari-pathreview")
    cam = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    add_cam_layer(viewer, a, cam, "gradcam", "malignant")
    viewer.open(_png(tmp_path / "b.png", 40, 40, seed=1), plugin="napari-pathreview")
    viewer.add_shapes([np.array([[2, 2], [2, 20], [20, 20]])], shape_type="polygon", name="mine")
    workspace.analyze.threshold.value = 0.7
    saved = workspace.save_session(tmp_path / "day1.session.json")
    assert saved is not None
    kinds = [e["type"] for e in json.loads(saved.read_text(encoding="utf-8"))["layers"]]
    assert kinds == ["image", "cam", "image", "roi"]
    return saved


def _edit_layers(saved: Path, change: Any) -> None:
    document = json.loads(saved.read_text(encoding="utf-8"))
    change(document["layers"])
    saved.write_text(json.dumps(document), encoding="utf-8")


def _restore(make_napari_viewer: Any, open_widget: Any, saved: Path) -> tuple[Any, Any, str]:
    """Open the session in a fresh viewer; returns (viewer, workspace, the one warning)."""
    seen = messages()
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    assert workspace.restore_session(saved)
    (warning,) = [m for m in seen if "not restored" in m]
    assert str(saved) in warning
    return viewer, workspace, warning


def test_an_image_entry_without_a_name_is_named_and_opened_with_the_rest(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    saved = _saved(make_napari_viewer(), open_widget, tmp_path)
    _edit_layers(saved, lambda layers: layers[2].pop("name"))

    viewer, workspace, warning = _restore(make_napari_viewer, open_widget, saved)
    assert "layers[2].name (image): missing; opened as 'b'" in warning
    assert [layer.name for layer in viewer.layers if layer.name in ("a", "b", "mine")] == [
        "a",
        "b",
        "mine",
    ]
    assert cam_layer_of(viewer, viewer.layers["a"]) is not None
    assert workspace.analyze.threshold.value == pytest.approx(0.7)


def test_an_image_whose_file_is_gone_is_named_and_skipped_with_its_cam_and_the_rest_restored(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    saved = _saved(make_napari_viewer(), open_widget, tmp_path)
    (tmp_path / "a.png").unlink()

    viewer, workspace, warning = _restore(make_napari_viewer, open_widget, saved)
    assert f"layers[0] (image 'a'): its file {tmp_path / 'a.png'} is gone" in warning
    assert "layers[1] (CAM of 'a'): its image 'a' is not open" in warning
    assert "a" not in viewer.layers
    assert "b" in viewer.layers and "mine" in viewer.layers
    assert workspace.analyze.threshold.value == pytest.approx(0.7)


def test_a_cam_made_on_an_image_of_another_shape_is_refused_naming_it_not_drawn_misaligned(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    saved = _saved(make_napari_viewer(), open_widget, tmp_path)
    _png(tmp_path / "a.png", 48, 48, seed=3)  # the file was re-exported since the save

    viewer, _workspace, warning = _restore(make_napari_viewer, open_widget, saved)
    assert "layers[1] (CAM of 'a'): its CAM was made on a 32×48 image" in warning
    assert "'a' is now 48×48" in warning
    assert cam_layer_of(viewer, viewer.layers["a"]) is None
    assert "b" in viewer.layers and "mine" in viewer.layers


def test_a_saved_cam_that_is_not_a_2d_map_is_named_and_the_rest_restored(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    saved = _saved(make_napari_viewer(), open_widget, tmp_path)
    arrays_file = tmp_path / "day1.session.cams.npz"
    with np.load(arrays_file) as stored:
        arrays = {key: stored[key] for key in stored.files}
    arrays["cam_0"] = np.stack([arrays["cam_0"]] * 3)  # same save, a 3×32×48 array
    np.savez_compressed(arrays_file, **arrays)

    viewer, workspace, warning = _restore(make_napari_viewer, open_widget, saved)
    assert "layers[1] (CAM of 'a'): its CAM must be a 2-D map, got an array of shape" in warning
    assert cam_layer_of(viewer, viewer.layers["a"]) is None
    assert "b" in viewer.layers and "mine" in viewer.layers
    assert workspace.analyze.threshold.value == pytest.approx(0.7)


def test_a_layers_bad_and_unknown_keys_are_named_and_the_layer_restored_with_its_defaults(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    saved = _saved(make_napari_viewer(), open_widget, tmp_path)
    _edit_layers(saved, lambda layers: layers[3].update(visible="no", zoom=2))

    viewer, _workspace, warning = _restore(make_napari_viewer, open_widget, saved)
    assert "layers[3].visible (roi 'mine'): must be true or false, got 'no'" in warning
    assert "layers[3].zoom: not a setting this version keeps (ignored)" in warning
    assert viewer.layers["mine"].visible is True  # left at its default


def test_an_entry_of_an_unknown_type_or_not_an_object_is_named_and_the_rest_restored(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    saved = _saved(make_napari_viewer(), open_widget, tmp_path)
    _edit_layers(saved, lambda layers: layers.extend([{"type": "points", "name": "p"}, 7]))

    viewer, _workspace, warning = _restore(make_napari_viewer, open_widget, saved)
    assert "layers[4] (points 'p'): type 'points' is not one of image, cam" in warning
    assert "layers[5]: must be an object describing a layer, got 7" in warning
    assert all(name in viewer.layers for name in ("a", "b", "mine"))
