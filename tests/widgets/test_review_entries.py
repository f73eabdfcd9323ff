"""The Review form keeps what the pathologist typed and shows only current, own reviews:
entries survive a prediction arriving, the form follows the reviewer's name, the disagreement
list holds each reviewer's latest review, and a queue image that cannot be read is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_helpers import (
    PREDICTION,
    answer_prompt,
    enter_reviewer,
    messages,
    put_prediction,
    queue_folder,
    wait_loaded,
)

from napari_pathreview.review import ReviewStore

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"


def test_notes_typed_before_the_prediction_arrives_are_kept(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.notes.value = "typed while the model runs"
    review.confidence.value = 0.95
    put_prediction(layers[0])  # Analyze finishes
    assert review.notes.value == "typed while the model runs"
    assert review.confidence.value == pytest.approx(0.95)
    assert review.label.value == "malignant" and review.agreement.value == "agree"
    assert review.has_unsaved_changes()


def test_a_label_picked_before_the_prediction_arrives_is_kept(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.label.value = "benign"
    put_prediction(layers[0])
    assert review.label.value == "benign" and review.agreement.value == "disagree"


def test_another_reviewer_does_not_see_the_first_reviewer_s_entries(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    enter_reviewer(review, "dr_a")
    put_prediction(layers[0])
    review.label.value = "benign"
    review.notes.value = "dr_a's note"
    assert review.save() is not None
    enter_reviewer(review, "dr_b")
    assert review.notes.value == "" and review.label.value == "malignant"
    assert not review.has_unsaved_changes()
    review.notes.value = "dr_b's own note"
    assert review.save() is not None
    [b_record] = ReviewStore().reviews(reviewer="dr_b")
    assert b_record.label == "malignant" and b_record.notes == "dr_b's own note"
    enter_reviewer(review, "dr_a")  # back to the first reviewer: their review again
    assert review.notes.value == "dr_a's note" and review.label.value == "benign"


def test_a_reviewer_s_name_entered_after_typing_keeps_the_entries(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, _layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.label.value = "benign"
    review.notes.value = "typed before the name"
    enter_reviewer(review, "dr_late")
    assert review.notes.value == "typed before the name" and review.label.value == "benign"
    assert review.save() is not None
    [record] = ReviewStore().reviews(reviewer="dr_late")
    assert record.notes == "typed before the name"


def test_the_disagreement_list_follows_the_reviewer_s_name(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    enter_reviewer(review, "dr_a")
    put_prediction(layers[0])
    review.label.value = "benign"
    assert review.save() is not None
    assert review.disagreements.count() == 1
    enter_reviewer(review, "dr_b")
    assert review.only_mine.value and review.disagreements.count() == 0


def test_a_restored_session_shows_the_restored_reviewer_s_review(
    make_napari_viewer: Any, open_widget: Any, sample_data: Path, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, "Workspace (Analyze + Review)")
    viewer.open(sample_data / BREAKHIS, plugin="napari-pathreview")
    review = workspace.review
    enter_reviewer(review, "dr_a")
    review.label.value = "benign"
    review.notes.value = "dr_a's note"
    assert review.save() is not None
    session = workspace.save_session(tmp_path / "review.session.json")

    other = make_napari_viewer()
    restored = open_widget(other, "Workspace (Analyze + Review)")
    enter_reviewer(restored.review, "someone_else")
    assert restored.restore_session(session)
    assert restored.review.reviewer.value == "dr_a"
    assert restored.review.notes.value == "dr_a's note"
    assert restored.review.label.value == "benign"


def test_a_disagreement_corrected_later_leaves_the_list(open_sample: Any, open_widget: Any) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    enter_reviewer(review, "dr_a")
    put_prediction(layers[0])
    review.label.value = "benign"
    assert review.save() is not None
    review.notes.value = "second look"
    assert review.save() is not None
    assert review.disagreements.count() == 1  # edited, not listed twice
    review.label.value = "malignant"  # now agrees with the model
    assert review.save() is not None
    assert review.disagreements.count() == 0


def test_a_queue_image_deleted_after_review_is_reported_without_a_traceback(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    seen = messages()
    paths = queue_folder(tmp_path, 2, seed=3)
    viewer = make_napari_viewer()
    review = open_widget(viewer, "Review")
    enter_reviewer(review, "dr_q")
    review.load_queue(paths[0].parent)
    wait_loaded(qtbot, review, paths[0])
    review.label.value = "benign"
    assert review.save() is not None
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    paths[0].unlink()
    worker = review.previous_item()
    qtbot.waitUntil(lambda: not worker.is_running and review.next_button.isEnabled())
    assert any("Cannot open case_0.png" in m for m in seen)
    assert "case_0.png" in review.progress_label.text()
    assert "cannot be opened" in review.progress_label.text()
    assert review.image_combo.value == "case_1"  # still the image on screen


def test_moving_on_in_the_queue_never_restores_another_open_image_s_roi(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, shared_data: Path, tmp_path: Path
) -> None:
    """The queue renames its reused layer; the form must not fall back to the first image."""
    import shutil

    for name in ("mdb005.pgm", "Info.txt"):
        shutil.copy(shared_data / "mias" / name, tmp_path / name)
    paths = queue_folder(tmp_path, 2, seed=3)
    viewer = make_napari_viewer()
    review = open_widget(viewer, "Review")
    enter_reviewer(review, "dr_q")
    viewer.open(tmp_path / "mdb005.pgm", plugin="napari-pathreview")
    review.label.value = "benign"
    review.roi_combo.value = "mdb005 ROI"
    assert review.save() is not None
    shown: list[str] = []
    review.image_combo.changed.connect(shown.append)
    review.load_queue(paths[0].parent)
    wait_loaded(qtbot, review, paths[0])
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    assert "mdb005" not in shown
    assert "saved ROI · mdb005" not in viewer.layers
    assert review.image_combo.value == "case_1"


def test_the_model_line_shows_the_model_s_name_when_the_text_is_long(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    workspace = open_widget(viewer, "Workspace (Analyze + Review)")
    review = workspace.review
    long_name = {**PREDICTION, "model_name": "breakhis-efficientnet-b0-stain-macenko"}
    put_prediction(layers[0], {**long_name, "restored": "from the saved session"})
    workspace.tabs.setCurrentIndex(1)
    field = review.model_line.native
    assert field.text().startswith("breakhis-efficientnet-b0-stain-macenko@1 said malignant")
    assert field.cursorPosition() == 0  # the start (the model's name) is what shows
    assert field.toolTip() == field.text()


def test_an_roi_picked_but_not_saved_asks_before_moving_on(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 2, seed=3)
    viewer = make_napari_viewer()
    review = open_widget(viewer, "Review")
    enter_reviewer(review, "dr_q")
    review.load_queue(paths[0].parent)
    wait_loaded(qtbot, review, paths[0])
    put_prediction(review.image_layer)  # the form agrees with the model already
    assert not review.has_unsaved_changes()
    viewer.add_shapes([np.array([[2, 2], [2, 20], [20, 20]])], shape_type="polygon", name="lesion")
    review.roi_combo.value = "lesion"
    assert review.has_unsaved_changes()
    answer_prompt("Save")
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    [record] = ReviewStore().reviews(reviewer="dr_q")
    assert record.roi_geojson is not None
