"""The Review widget in a real viewer: saving to the store, locked databases, the work queue."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from napari_pathreview.review import ReviewStore
from napari_pathreview.widgets.analyze import AnalyzeWidget
from napari_pathreview.widgets.review import NEXT_KEY, ReviewWidget

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"


def _messages() -> list[str]:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def _folder(tmp_path: Path, n: int = 3) -> list[Path]:
    folder = tmp_path / "queue"
    folder.mkdir()
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = folder / f"case_{i}.png"
        Image.fromarray(rng.integers(60, 200, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_a_review_saved_from_the_widget_is_in_the_store(
    qtbot: Any, open_sample: Any, histology_model: str
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    analyze = AnalyzeWidget(viewer)
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    review = ReviewWidget(viewer)
    review.reset_choices()
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
    review.reset_choices()
    review.roi_combo.value = roi.name
    assert review.save() is not None
    [record] = ReviewStore().reviews(reviewer="dr_a")
    assert record.label == other and record.agrees_with_model is False
    assert record.confidence == pytest.approx(0.9) and record.notes == "atypia at the left edge"
    assert record.model == histology_model and record.predicted_label == predicted
    assert record.roi_geojson["features"][0]["geometry"]["type"] == "Polygon"
    assert review.disagreements.count() == 1


def test_a_locked_database_keeps_the_form_and_saves_later(
    open_sample: Any, isolated_home: Path, tmp_path: Path
) -> None:
    seen = _messages()
    viewer, _ = open_sample(BREAKHIS)
    db = tmp_path / "team.sqlite"
    review = ReviewWidget(viewer, db_url=str(db), busy_timeout_s=0.2)
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


def test_saving_a_layer_without_a_file_says_what_to_do(make_napari_viewer: Any) -> None:
    seen = _messages()
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20, 3), np.uint8), name="pasted", rgb=True)
    review = ReviewWidget(viewer)
    assert review.save() is None
    assert any("no image file on disk" in m for m in seen)


def test_queue_resumes_where_the_reviewer_stopped(make_napari_viewer: Any, tmp_path: Path) -> None:
    paths = _folder(tmp_path)
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    review.reviewer.value = "dr_c"
    queue = review.load_queue(paths[0].parent)
    assert queue.current == paths[0]
    assert review.image_layer.metadata["pathreview"]["source_path"] == str(paths[0])
    review.label.value = "benign"
    assert review.save() is not None
    assert review.progress_label.text().startswith("1 of 3 reviewed")
    [shortcut] = [f for k, f in viewer.keymap.items() if str(k).replace("+", "-") == NEXT_KEY]
    shortcut(viewer)  # what pressing Alt+→ in the viewer calls
    assert review.queue.current == paths[1]
    assert review.image_layer.metadata["pathreview"]["source_path"] == str(paths[1])
    assert len([layer for layer in viewer.layers if type(layer).__name__ == "Image"]) == 1

    later = ReviewWidget(make_napari_viewer())  # napari restarted
    later.reviewer.value = "dr_c"
    assert later.load_queue(paths[0].parent).current == paths[1]
    other = ReviewWidget(make_napari_viewer())
    other.reviewer.value = "dr_d"  # another reviewer starts from the beginning
    assert other.load_queue(paths[0].parent).current == paths[0]


def test_disagreements_export_as_a_training_manifest(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    paths = _folder(tmp_path, 2)
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    review.reviewer.value = "dr_e"
    review.load_queue(paths[0].parent)
    layer = review.image_layer
    meta = dict(layer.metadata["pathreview"])
    meta["prediction"] = {
        "model_name": "m",
        "model_version": "1",
        "classes": ["benign", "malignant"],
        "probabilities": {"benign": 0.2, "malignant": 0.8},
        "label": "malignant",
        "threshold": 0.5,
        "settings": {"tta": "none"},
    }
    layer.metadata["pathreview"] = meta
    review.reset_choices()
    review.label.value = "benign"
    assert review.agreement.value == "disagree"
    assert review.save() is not None
    review.next_item()
    review.label.value = "benign"
    review.agreement.value = "agree"
    assert review.save() is not None
    assert len(review.refresh_disagreements()) == 1
    out = review.export_disagreements(tmp_path / "retrain.csv")
    rows = list(csv.DictReader(out.open()))
    assert [(Path(r["path"]).name, r["label"]) for r in rows] == [("case_0.png", "benign")]
