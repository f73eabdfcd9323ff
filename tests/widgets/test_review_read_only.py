"""The Review dock on a review database the user may only read (a team's file on a read-only
share): it lists what is there, and a save is refused naming the file with the entries kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from review_helpers import PREDICTION, messages, put_prediction, queue_folder, wait_loaded

from napari_pathreview.review import ReviewStore

pytestmark = pytest.mark.viewer


def _team_database(path: Path, image: Path) -> None:
    """A database where dr_a disagreed with the model on ``image``."""
    with ReviewStore(path) as store:
        sha = store.add_image(image, "histology")
        prediction = store.add_prediction(sha, "m", "1", PREDICTION["probabilities"], {})
        store.add_review(sha, "dr_a", "benign", False, prediction_id=prediction)


def test_a_read_only_share_is_listed_and_a_save_there_is_refused_keeping_the_entries(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_only: Callable[[Path], None],
) -> None:
    paths = queue_folder(tmp_path, 2, seed=3)
    database = tmp_path / "share" / "reviews.sqlite"
    _team_database(database, paths[0])
    read_only(database)
    read_only(database.parent)
    monkeypatch.setenv("PATHREVIEW_DB_URL", str(database))
    seen = messages()
    review = open_widget(make_napari_viewer(), "Review")
    review.reviewer.value = "dr_b"
    review.load_queue(paths[0].parent)
    wait_loaded(qtbot, review, paths[0])
    review.only_mine.value = False  # the team's disagreements
    assert [r.reviewer for r in review.refresh_disagreements()] == ["dr_a"]
    put_prediction(review.image_layer)
    review.label.value = "benign"
    review.notes.value = "keep me"
    assert review.save() is None
    assert any(
        "Review not saved (your entries are kept)" in m and f"{database} cannot be written" in m
        for m in seen
    )
    assert review.notes.value == "keep me" and review.label.value == "benign"
    assert review.has_unsaved_changes()
