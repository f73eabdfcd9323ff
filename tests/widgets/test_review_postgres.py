"""The Review dock on a team's PostgreSQL review database (a real server, ``pg_url``): a save
lands there whole and reads back in the dock and for a teammate, and two reviewers saving the
same image both land."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_helpers import enter_reviewer, put_prediction, queue_folder, wait_loaded

from napari_pathreview.review import ReviewStore

pytestmark = [pytest.mark.viewer, pytest.mark.postgres]

TRIANGLE = np.array([[2.0, 2.0], [2.0, 20.0], [20.0, 20.0]])


@pytest.fixture
def team_db(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dock's database is the team's PostgreSQL one, as ``PATHREVIEW_DB_URL`` sets it."""
    monkeypatch.setenv("PATHREVIEW_DB_URL", pg_url)
    return pg_url


def _dock_on(qtbot: Any, viewer: Any, open_widget: Any, reviewer: str, path: Path) -> Any:
    """A Review dock in ``viewer`` for ``reviewer`` with the queue of ``path`` shown at it."""
    review = open_widget(viewer, "Review")
    enter_reviewer(review, reviewer)
    review.load_queue(path.parent)
    wait_loaded(qtbot, review, path)
    return review


def test_a_review_saved_to_postgres_reads_back_in_the_dock_and_for_a_teammate(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path, team_db: str
) -> None:
    paths = queue_folder(tmp_path, 2, seed=11)
    viewer = make_napari_viewer()
    review = _dock_on(qtbot, viewer, open_widget, "dr_a", paths[0])
    assert review.store().backend == "postgresql"
    put_prediction(review.image_layer)  # the model said malignant
    review.label.value = "benign"
    review.notes.value = "atypia at the left edge"
    viewer.add_shapes([TRIANGLE], shape_type="polygon", name="mine")
    review.roi_combo.value = "mine"
    assert review.save() is not None

    review.next_item()  # away and back: the form is filled again from the server
    wait_loaded(qtbot, review, paths[1])
    review.previous_item()
    wait_loaded(qtbot, review, paths[0])
    assert review.label.value == "benign" and review.notes.value == "atypia at the left edge"
    assert review.roi_combo.value == "saved ROI · case_0"
    saved = viewer.layers["saved ROI · case_0"]
    world = np.asarray(saved.data[0]) * saved.scale + saved.translate
    np.testing.assert_allclose(world, TRIANGLE, atol=1e-6)
    assert [r.label for r in review.refresh_disagreements()] == ["benign"]
    assert not review.has_unsaved_changes()

    with ReviewStore(team_db, create=False) as teammate:  # another connection, another user
        [record] = teammate.reviews(reviewer="dr_a")
    assert (record.label, record.agrees_with_model) == ("benign", False)
    assert record.notes == "atypia at the left edge"
    [ring] = record.roi_geojson["features"][0]["geometry"]["coordinates"]
    # GeoJSON [x, y], closed, in QuPath's pixel corners (napari's + 0.5)
    np.testing.assert_allclose(np.array(ring[:-1])[:, ::-1], TRIANGLE + 0.5, atol=1e-6)


def test_two_reviewers_saving_the_same_image_to_postgres_both_land(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path, team_db: str
) -> None:
    paths = queue_folder(tmp_path, 1, seed=12)
    ann = _dock_on(qtbot, make_napari_viewer(), open_widget, "dr_ann", paths[0])
    ben = _dock_on(qtbot, make_napari_viewer(), open_widget, "dr_ben", paths[0])
    for review, label in ((ann, "benign"), (ben, "malignant")):  # both opened it before saving
        put_prediction(review.image_layer)
        review.label.value = label
    assert ann.save() is not None
    assert ben.save() is not None

    with ReviewStore(team_db, create=False) as teammate:
        records = teammate.reviews()
        assert teammate.counts()["images"] == 1
    assert sorted((r.reviewer, r.label) for r in records) == [
        ("dr_ann", "benign"),
        ("dr_ben", "malignant"),
    ]
    assert len({r.image_sha256 for r in records}) == 1
    ann.only_mine.value = False  # the team's disagreements, as Ann's dock lists them
    assert [r.reviewer for r in ann.refresh_disagreements()] == ["dr_ann"]
    assert ann.label.value == "benign" and ben.label.value == "malignant"
