"""A saved session's Review and work-queue settings, restored key by key as Analyze's are: a bad
or unknown key is named with the session file in napari's notification and everything else is
restored; a save never leaves a half-written or mismatched pair of files.

Sessions are real files written by the workspace dock (Plugins ▸ PathReview), then edited by
hand as a user or another version would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_helpers import enter_reviewer, messages, queue_folder, wait_loaded

pytestmark = pytest.mark.viewer

WORKSPACE = "Workspace (Analyze + Review)"


def _saved_queue_session(
    qtbot: Any, viewer: Any, open_widget: Any, tmp_path: Path, csv: bool = False
) -> Any:
    """A workspace with reviewer dr_k on image 2 of a 3-image queue (a folder, or with ``csv``
    the manifest ``queue.csv`` listing it), Analyze's threshold at 0.7 and the Review tab in
    front, saved to ``day1.session.json``; returns (paths, file)."""
    paths = queue_folder(tmp_path, 3, seed=5)
    source = paths[0].parent
    if csv:
        source = _manifest(tmp_path / "queue.csv", paths)
    workspace = open_widget(viewer, WORKSPACE)
    review = workspace.review
    enter_reviewer(review, "dr_k")
    review.only_mine.value = False
    review.load_queue(source)
    wait_loaded(qtbot, review, paths[0])
    review.next_item()
    wait_loaded(qtbot, review, paths[1])
    workspace.analyze.threshold.value = 0.7
    workspace.tabs.setCurrentIndex(1)
    saved = workspace.save_session(tmp_path / "day1.session.json")
    assert saved is not None
    return paths, saved


def _manifest(path: Path, images: list[Path]) -> Path:
    path.write_text("path\n" + "".join(f"{image}\n" for image in images), encoding="utf-8")
    return path


def _edit(saved: Path, change: Any) -> None:
    document = json.loads(saved.read_text(encoding="utf-8"))
    change(document)
    saved.write_text(json.dumps(document), encoding="utf-8")


def _not_restored(seen: list[str]) -> str:
    (warning,) = [m for m in seen if "not restored" in m]
    return warning


def test_a_bad_review_key_is_named_with_the_session_file_and_the_rest_restored(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths, saved = _saved_queue_session(qtbot, make_napari_viewer(), open_widget, tmp_path)
    _edit(saved, lambda d: d["review"].update(only_mine="no"))  # bool("no") would be True
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    wait_loaded(qtbot, restored.review, paths[1])
    warning = _not_restored(seen)
    assert str(saved) in warning
    assert "review.only_mine: must be true or false, got 'no'" in warning
    review = restored.review
    assert review.only_mine.value is True  # left as the dock holds it
    assert review.reviewer.value == "dr_k"
    assert review.queue.index == 1
    assert restored.analyze.threshold.value == pytest.approx(0.7)
    assert restored.tabs.currentIndex() == 1


def test_a_reviewer_that_is_not_text_is_named_and_the_dock_keeps_its_own(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths, saved = _saved_queue_session(qtbot, make_napari_viewer(), open_widget, tmp_path)
    _edit(saved, lambda d: d["review"].update(reviewer=42))
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    enter_reviewer(restored.review, "dr_tomorrow")
    assert restored.restore_session(saved)
    wait_loaded(qtbot, restored.review, paths[1])
    warning = _not_restored(seen)
    assert str(saved) in warning and "review.reviewer: must be text, got 42" in warning
    assert restored.review.reviewer.value == "dr_tomorrow"
    assert restored.review.only_mine.value is False


def test_an_unknown_queue_order_is_named_and_the_queue_reopens_by_file_name_at_its_image(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths, saved = _saved_queue_session(qtbot, make_napari_viewer(), open_widget, tmp_path)
    _edit(saved, lambda d: d["queue"].update(order="sideways"))
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    review = restored.review
    wait_loaded(qtbot, review, paths[1])
    warning = _not_restored(seen)
    assert str(saved) in warning and "queue.order: 'sideways' is not a valid choice" in warning
    assert review.queue_order.value == "file name"
    assert review.queue.paths == paths and review.queue.index == 1
    assert review.reviewer.value == "dr_k"


def test_a_queue_whose_ordering_model_is_gone_reopens_by_file_name_naming_the_model(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths, saved = _saved_queue_session(qtbot, make_napari_viewer(), open_widget, tmp_path)
    _edit(saved, lambda d: d["queue"].update(order="uncertainty", model="removed-model@3"))
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    review = restored.review
    wait_loaded(qtbot, review, paths[1])
    warning = _not_restored(seen)
    assert str(saved) in warning and "queue.model: " in warning and "removed-model" in warning
    assert "the queue opens in file name order" in warning
    assert review.queue_order.value == "file name" and review.queue.paths == paths


def test_a_queue_manifest_that_is_gone_is_named_and_the_other_settings_restored(
    make_napari_viewer: Any, open_widget: Any, qtbot: Any, tmp_path: Path
) -> None:
    _paths, saved = _saved_queue_session(
        qtbot, make_napari_viewer(), open_widget, tmp_path, csv=True
    )
    (tmp_path / "queue.csv").unlink()
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    warning = _not_restored(seen)
    assert str(saved) in warning
    assert f"queue.source: cannot read queue CSV {tmp_path / 'queue.csv'}" in warning
    assert restored.review.queue is None and restored.review.loading is None
    assert restored.review.reviewer.value == "dr_k"
    assert restored.analyze.threshold.value == pytest.approx(0.7)
    assert restored.tabs.currentIndex() == 1


def test_a_queue_image_no_longer_in_the_manifest_is_named_and_the_queue_opens_at_its_position(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths, saved = _saved_queue_session(
        qtbot, make_napari_viewer(), open_widget, tmp_path, csv=True
    )
    _manifest(tmp_path / "queue.csv", [paths[0], paths[2]])  # the manifest was edited since
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    wait_loaded(qtbot, restored.review, paths[2])  # position 1 of what is left
    warning = _not_restored(seen)
    assert str(saved) in warning
    assert f"queue.path: {paths[1]} is no longer in the queue; it opens at image 2" in warning


def test_unknown_keys_are_reported_and_everything_else_restored(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    def add_keys(document: dict[str, Any]) -> None:
        document["review"]["colour"] = "blue"
        document["queue"]["speed"] = 2
        document["zoom"] = 3.0

    paths, saved = _saved_queue_session(qtbot, make_napari_viewer(), open_widget, tmp_path)
    _edit(saved, add_keys)
    seen = messages()

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    wait_loaded(qtbot, restored.review, paths[1])
    warning = _not_restored(seen)
    assert str(saved) in warning and "3 saved setting(s)" in warning
    for key in ("review.colour", "queue.speed", "zoom"):
        assert f"{key}: not a setting this version keeps (ignored)" in warning
    assert restored.review.reviewer.value == "dr_k"
    assert restored.review.only_mine.value is False


def test_an_untouched_session_restores_without_a_warning(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    paths, saved = _saved_queue_session(qtbot, make_napari_viewer(), open_widget, tmp_path)
    seen = messages()
    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    wait_loaded(qtbot, restored.review, paths[1])
    assert not [m for m in seen if "not restored" in m]
    assert any(f"Session restored from {saved}" in m for m in seen)


def test_arrays_left_from_another_save_are_refused_naming_the_file(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="drawn")
    saved = workspace.save_session(tmp_path / "s.session.json")
    first_arrays = tmp_path / "first.cams.npz"
    shutil.copy(tmp_path / "s.session.cams.npz", first_arrays)
    assert workspace.save_session(saved) == saved  # saved again: a new pair of files
    shutil.copy(first_arrays, tmp_path / "s.session.cams.npz")  # as a save cut off between them
    seen = messages()

    assert not open_widget(make_napari_viewer(), WORKSPACE).restore_session(saved)
    assert any(str(saved) in m and "s.session.cams.npz is from another save" in m for m in seen)
