"""The Review widget from Plugins ▸ PathReview: saving, locked databases, the work queue."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_helpers import (
    PREDICTION,
    answer_prompt,
    messages,
    put_prediction,
    queue_folder,
    wait_loaded,
)

from napari_pathreview.review import ReviewStore
from napari_pathreview.widgets.review import NEXT_KEY

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"


def _queue_review(qtbot: Any, make_napari_viewer: Any, open_widget: Any, paths: list[Path]) -> Any:
    viewer = make_napari_viewer()
    review = open_widget(viewer, "Review")
    review.reviewer.value = "dr_q"
    review.load_queue(paths[0].parent)
    wait_loaded(qtbot, review, paths[0])
    return viewer, review


def test_a_review_saved_from_the_widget_is_in_the_store(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    analyze = open_widget(viewer, "Analyze")
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    review = open_widget(viewer, "Review")
    predicted = analyze.result.prediction.label
    other = next(c for c in ("benign", "malignant") if c != predicted)
    review.reviewer.value = "dr_a"
    review.label.value = other
    assert review.agreement.value == "disagree"  # suggested from the model's call
    review.confidence.value = 0.9
    review.notes.value = "atypia at the left edge"
    roi = viewer.add_shapes(
        [np.array([[10, 10], [10, 80], [80, 80], [80, 10]])], shape_type="polygon", name="roi"
    )
    review.roi_combo.value = roi.name
    assert review.save() is not None
    [record] = ReviewStore().reviews(reviewer="dr_a")
    assert record.label == other and record.agrees_with_model is False
    assert record.confidence == pytest.approx(0.9) and record.notes == "atypia at the left edge"
    assert record.model == histology_model and record.predicted_label == predicted
    assert record.roi_geojson["features"][0]["geometry"]["type"] == "Polygon"
    assert review.disagreements.count() == 1


def test_an_roi_on_a_scale_1_shapes_layer_is_stored_in_the_image_s_pixels(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    image = layers[0]
    um = float(image.scale[-1])
    assert um < 0.9  # a µm-scaled patch: world units are not pixels
    review = open_widget(viewer, "Review")
    review.reviewer.value = "dr_px"
    review.label.value = "benign"
    r0, r1, c0, c1 = 100.0, 300.0, 150.0, 500.0  # the image pixels the reviewer outlines
    pixels = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])
    world = pixels * np.asarray(image.scale) + np.asarray(image.translate)
    # napari's "new shapes layer" button over another active layer: scale 1, drawn in world
    roi = viewer.add_shapes([world], shape_type="polygon", name="drawn at scale 1")
    assert tuple(roi.scale) == (1.0, 1.0)
    review.roi_combo.value = roi.name
    assert review.save() is not None
    [record] = ReviewStore().reviews(reviewer="dr_px")
    [ring] = record.roi_geojson["features"][0]["geometry"]["coordinates"]
    xy = np.array(ring[:-1])  # GeoJSON [x, y], closed, QuPath's pixel corners (napari's + 0.5)
    np.testing.assert_allclose(xy[:, ::-1], pixels + 0.5, atol=1e-3)


def test_review_sees_a_prediction_made_without_a_cam(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    analyze = open_widget(viewer, "Analyze")
    review = open_widget(viewer, "Review")
    analyze.cam_method.value = "none"
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    label = analyze.result.prediction.label
    assert review.model_line.value.endswith(f"said {label}")
    assert review.label.value == label and review.agreement.value == "agree"


def test_no_prediction_stores_null_and_disagreeing_with_the_model_s_own_label_is_refused(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    seen = messages()
    paths = queue_folder(tmp_path, 2, seed=1)
    _viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    assert not review.agreement.enabled  # nothing to agree with yet
    review.label.value = "benign"
    assert review.save() is not None
    [record] = ReviewStore().reviews(reviewer="dr_q")
    assert record.agrees_with_model is None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    put_prediction(review.image_layer)
    review.label.value = "malignant"
    review.agreement.value = "disagree"
    assert review.save() is None
    assert any("is the model's own call" in m for m in seen)
    assert len(ReviewStore().reviews(reviewer="dr_q")) == 1


def test_moving_on_resets_the_form_and_never_saves_the_previous_image_s_roi(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 2, seed=1)
    viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    review.label.value = "malignant"
    review.confidence.value = 0.3
    review.notes.value = "first case"
    viewer.add_shapes([np.array([[2, 2], [2, 20], [20, 20]])], shape_type="polygon", name="mine")
    review.roi_combo.value = "mine"
    assert review.save() is not None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    assert review.notes.value == "" and review.confidence.value == pytest.approx(0.8)
    assert review.label.value is None
    assert review.roi_combo.choices == ("(no ROI)",)  # the first image's ROI is not offered
    review.label.value = "benign"
    assert review.save() is not None
    first, second = ReviewStore().reviews(reviewer="dr_q")
    assert first.roi_geojson is not None and second.roi_geojson is None

    review.previous_item()  # back to the first: its saved review comes back
    wait_loaded(qtbot, review, paths[0])
    assert review.label.value == "malignant" and review.notes.value == "first case"
    assert review.confidence.value == pytest.approx(0.3)
    assert review.roi_combo.value == f"saved ROI · {review.image_layer.name}"
    assert not review.has_unsaved_changes()


def test_a_saved_roi_never_comes_back_as_another_queue_image_s_roi(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    """The queue reuses the image layer; its ROI must follow the file, not the old layer name."""
    paths = queue_folder(tmp_path, 2, seed=1)
    viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    review.label.value = "malignant"
    viewer.add_shapes([np.array([[2, 2], [2, 20], [20, 20]])], shape_type="polygon", name="mine")
    review.roi_combo.value = "mine"
    assert review.save() is not None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    review.previous_item()
    wait_loaded(qtbot, review, paths[0])
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    assert review.roi_combo.choices == ("(no ROI)",)
    assert "saved ROI · case_1" not in viewer.layers


def test_unsaved_changes_prompt_before_moving_on(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 2, seed=1)
    _viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    review.label.value = "benign"
    review.notes.value = "half-typed"
    answer_prompt("Stay")
    assert review.next_item() is None
    assert review.queue.index == 0 and review.notes.value == "half-typed"
    answer_prompt("Save")
    assert review.next_item() is not None
    wait_loaded(qtbot, review, paths[1])
    assert [r.notes for r in ReviewStore().reviews(reviewer="dr_q")] == ["half-typed"]


def test_end_of_queue_is_announced(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    seen = messages()
    paths = queue_folder(tmp_path, 2, seed=1)
    _viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    assert review.next_item() is None
    assert any(m.startswith("End of the queue: 0 of 2 reviewed; 2 still to review") for m in seen)
    assert "end of the queue" in review.progress_label.text()


def test_hotkeys_agree_disagree_and_save(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    from napari_pathreview.widgets.review import AGREE_KEY, DISAGREE_KEY, SAVE_KEY

    paths = queue_folder(tmp_path, 1, seed=1)
    viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    put_prediction(review.image_layer)
    keys = {str(k).replace("+", "-"): f for k, f in viewer.keymap.items()}
    review.label.value = "benign"
    keys[AGREE_KEY](viewer)
    assert review.agreement.value == "agree"
    keys[DISAGREE_KEY](viewer)
    assert review.agreement.value == "disagree"
    keys[SAVE_KEY](viewer)
    [record] = ReviewStore().reviews(reviewer="dr_q")
    assert record.label == "benign" and record.agrees_with_model is False


def test_clicking_a_disagreement_opens_its_image(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 2, seed=1)
    _viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    put_prediction(review.image_layer)
    review.label.value = "benign"
    assert review.save() is not None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    item = review.disagreements.item(0)
    review.disagreements.itemClicked.emit(item)
    wait_loaded(qtbot, review, paths[0])
    assert review.queue.index == 0
    assert review.image_layer.metadata["pathreview"]["source_path"] == str(paths[0])


def test_a_locked_database_keeps_the_form_and_saves_later(
    open_sample: Any,
    open_widget: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = messages()
    db = tmp_path / "team.sqlite"
    monkeypatch.setenv("PATHREVIEW_DB_URL", str(db))
    viewer, _ = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.busy_timeout_s = 0.2
    review.store()  # create the schema first
    review.reviewer.value = "dr_b"
    review.label.value = "benign"
    review.notes.value = "keep me"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert review.save() is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert any("locked" in m for m in seen)
    assert review.notes.value == "keep me" and review.label.value == "benign"
    assert review.save() is not None
    assert [r.notes for r in ReviewStore(str(db)).reviews()] == ["keep me"]


def test_a_silent_database_server_makes_save_wait_but_never_the_viewer(
    open_sample: Any,
    open_widget: Any,
    silent_server: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qtpy.QtCore import QTimer

    from napari_pathreview.review import engine

    monkeypatch.setattr(engine, "PG_CONNECT_TIMEOUT_S", 2)  # the default is 10 s
    monkeypatch.setenv("PATHREVIEW_DB_URL", f"postgresql://dr@127.0.0.1:{silent_server}/reviews")
    seen = messages()
    viewer, _ = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.reviewer.value = "dr_c"
    review.label.value = "malignant"
    review.notes.value = "typed while the server hangs"
    save_enabled_while_waiting: list[bool] = []
    second_press: list[int | None] = []
    ticker = QTimer()
    button = review.save_button
    ticker.timeout.connect(lambda: save_enabled_while_waiting.append(button.isEnabled()))
    ticker.start(50)
    QTimer.singleShot(300, lambda: second_press.append(review.save()))
    try:
        assert review.save() is None
    finally:
        ticker.stop()
    # Qt's event loop ran during the wait (a frozen viewer runs no timers), Save disabled
    assert len(save_enabled_while_waiting) >= 5 and not any(save_enabled_while_waiting)
    assert second_press == [None] and any("Still saving" in m for m in seen)
    assert any("timeout" in m and f"127.0.0.1:{silent_server}" in m for m in seen)
    assert review.save_button.isEnabled() and not review.saving
    assert review.notes.value == "typed while the server hangs" and review.has_unsaved_changes()


def test_saving_a_layer_without_a_file_says_what_to_do(
    make_napari_viewer: Any, open_widget: Any
) -> None:
    seen = messages()
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20, 3), np.uint8), name="pasted", rgb=True)
    review = open_widget(viewer, "Review")
    review.label.value = "benign"
    assert review.save() is None
    assert any("no image file on disk" in m for m in seen)


def test_queue_resumes_where_the_reviewer_stopped(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 3, seed=1)
    viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    assert review.image_layer.metadata["pathreview"]["source_path"] == str(paths[0])
    review.label.value = "benign"
    assert review.save() is not None
    assert review.progress_label.text().startswith("1 of 3 reviewed")
    keys = {str(k).replace("+", "-"): f for k, f in viewer.keymap.items()}
    keys[NEXT_KEY](viewer)  # what pressing Alt+→ in the viewer calls
    wait_loaded(qtbot, review, paths[1])
    assert review.queue.current == paths[1]
    assert review.image_layer.metadata["pathreview"]["source_path"] == str(paths[1])
    from napari.layers import Image as ImageLayer

    assert len([layer for layer in viewer.layers if isinstance(layer, ImageLayer)]) == 1

    _later_viewer, later = _queue_review(qtbot, make_napari_viewer, open_widget, [paths[1]])
    assert later.queue.current == paths[1]  # napari restarted: resumes after the done one
    other = open_widget(make_napari_viewer(), "Review")
    other.reviewer.value = "dr_d"  # another reviewer starts from the beginning
    other.load_queue(paths[0].parent)  # built in a worker: the store is read off the GUI thread
    qtbot.waitUntil(lambda: other.queue is not None, timeout=20_000)
    assert other.queue.current == paths[0]
    wait_loaded(qtbot, other, paths[0])  # its image opens in a worker too: let it finish


def test_the_count_follows_the_reviewer_once_the_name_is_entered(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    from qtpy.QtCore import Qt

    paths = queue_folder(tmp_path, 3, seed=1)
    _viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    review.label.value = "benign"
    assert review.save() is not None
    assert review.progress_label.text().startswith("1 of 3 reviewed")
    field = review.reviewer.native
    field.clear()
    qtbot.keyClicks(field, "dr_new")
    assert review.progress_label.text().startswith("1 of 3 reviewed")  # not per keystroke
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert review.progress_label.text().startswith("0 of 3 reviewed")


def test_disagreements_export_as_a_training_manifest(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 2, seed=1)
    _viewer, review = _queue_review(qtbot, make_napari_viewer, open_widget, paths)
    put_prediction(review.image_layer)
    review.label.value = "benign"
    assert review.agreement.value == "disagree"
    assert review.save() is not None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    put_prediction(review.image_layer, {**PREDICTION, "label": "benign"})
    review.label.value = "benign"
    assert review.agreement.value == "agree"
    assert review.save() is not None
    assert len(review.refresh_disagreements()) == 1
    out = review.export_disagreements(tmp_path / "retrain.csv")
    rows = list(csv.DictReader(out.open()))
    assert [(Path(r["path"]).name, r["label"], r["weight"]) for r in rows] == [
        ("case_0.png", "benign", "2.0")
    ]


def test_picking_another_image_with_unsaved_entries_asks_first(
    qtbot: Any, open_sample: Any, open_widget: Any, sample_data: Path
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    other = viewer.open(
        sample_data / "breakhis/SOB_B_F-14-9133-40-001.png", plugin="napari-pathreview"
    )[0]
    review = open_widget(viewer, "Review")
    review.image_combo.value = layers[0].name
    review.label.value = "benign"
    review.notes.value = "not saved yet"
    answer_prompt("Stay")
    review.image_combo.value = other.name
    assert review.image_combo.value == layers[0].name and review.notes.value == "not saved yet"
    answer_prompt("Discard")
    review.image_combo.value = other.name
    assert review.image_combo.value == other.name and review.notes.value == ""
