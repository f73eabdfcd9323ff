"""Coming back to a queue image: its prediction is shown again, labelled as restored, only
when it is that image's and was made by the model and settings chosen now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from review_helpers import queue_folder

from napari_pathreview.review import ReviewStore

pytestmark = pytest.mark.viewer

WORKSPACE = "Workspace (Analyze + Review)"


def _workspace(make_napari_viewer: Any, open_widget: Any) -> tuple[Any, Any]:
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    workspace.review.reviewer.value = "dr_r"
    return viewer, workspace


def _shown(qtbot: Any, review: Any, path: Path) -> None:
    qtbot.waitUntil(
        lambda: review.loaded_path == path and review.next_button.isEnabled(), timeout=20_000
    )


def _queue_of_two(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> tuple[list[Path], Any, Any]:
    """Two images queued in the Workspace dock, the first one shown."""
    paths = queue_folder(tmp_path, 2, seed=5, shape=(48, 48))
    viewer, workspace = _workspace(make_napari_viewer, open_widget)
    workspace.review.load_queue(paths[0].parent)
    _shown(qtbot, workspace.review, paths[0])
    return paths, viewer, workspace


def _analyse(qtbot: Any, analyze: Any) -> dict[str, Any]:
    analyze.run()
    qtbot.waitUntil(lambda: analyze.result is not None, timeout=60_000)
    return analyze.result.record()


def _prediction(viewer: Any, name: str) -> dict[str, Any] | None:
    return viewer.layers[name].metadata["pathreview"].get("prediction")


def _away_and_back(qtbot: Any, review: Any, paths: list[Path], change: Any) -> None:
    """Next, ``change`` the Analyze form while the other image is shown, then Prev."""
    review.next_item()
    _shown(qtbot, review, paths[1])
    change()
    review.previous_item()
    _shown(qtbot, review, paths[0])


def test_coming_back_to_an_analysed_image_shows_its_prediction_labelled_from_this_session(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths, viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    analyze, review = workspace.analyze, workspace.review
    made = _analyse(qtbot, analyze)
    review.next_item()
    _shown(qtbot, review, paths[1])
    review.previous_item()
    _shown(qtbot, review, paths[0])

    again = _prediction(viewer, "case_0")
    assert again["probabilities"] == made["probabilities"] and again["label"] == made["label"]
    assert again["restored"] == "from earlier this session"
    assert analyze.table.rowCount() == 2
    assert "restored from earlier this session" in analyze.decision.text()
    assert review.model_line.value.endswith(f"said {made['label']} (from earlier this session)")
    assert review.label.value == made["label"] and review.agreement.value == "agree"
    saved = workspace.save_session(tmp_path / "s.session.json")
    entry = json.loads(saved.read_text())["layers"][0]
    assert entry["name"] == "case_0" and entry["prediction"]["label"] == made["label"]


def test_a_prediction_reopened_from_a_session_is_labelled_from_the_saved_session(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths, _viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    review = workspace.review
    made = _analyse(qtbot, workspace.analyze)
    _away_and_back(qtbot, review, paths, lambda: None)  # restored from earlier this session
    saved = workspace.save_session(tmp_path / "day1.session.json")
    assert "from earlier this session" not in saved.read_text()

    viewer, workspace = _workspace(make_napari_viewer, open_widget)  # the next day
    assert workspace.restore_session(saved)
    _shown(qtbot, workspace.review, paths[0])
    again = _prediction(viewer, "case_0")
    assert again["label"] == made["label"] and again["restored"] == "from the saved session"
    assert workspace.review.model_line.value.endswith("(from the saved session)")


def test_the_next_image_never_shows_the_prediction_of_the_one_before(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths, viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    analyze, review = workspace.analyze, workspace.review
    _analyse(qtbot, analyze)
    review.next_item()
    _shown(qtbot, review, paths[1])
    assert _prediction(viewer, "case_1") is None
    assert analyze.table.rowCount() == 0
    assert review.model_line.value.startswith("no prediction")


def test_the_status_line_is_cleared_with_the_panel_when_the_queue_moves_on(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths, _viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    analyze, review = workspace.analyze, workspace.review
    analyze.auto_run.value = False
    _analyse(qtbot, analyze)
    assert analyze.status.text().startswith("done in")
    review.next_item()
    _shown(qtbot, review, paths[1])
    assert analyze.table.rowCount() == 0
    assert analyze.status.text() == ""


def test_a_prediction_of_another_model_is_not_restored(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    histology_model: str,
    register_model: Any,
    tmp_path: Path,
) -> None:
    other = register_model("tiny-histology-b", "histology", ["benign", "malignant"], seed=3)
    paths, viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    analyze, review = workspace.analyze, workspace.review
    analyze.model_combo.value = histology_model
    _analyse(qtbot, analyze)
    review.next_item()
    _shown(qtbot, review, paths[1])
    analyze.model_combo.value = other
    review.previous_item()
    _shown(qtbot, review, paths[0])
    assert _prediction(viewer, "case_0") is None
    assert analyze.table.rowCount() == 0
    assert review.model_line.value.startswith("no prediction")


def test_a_prediction_comes_back_when_only_the_cam_method_changed(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths, viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    analyze = workspace.analyze
    analyze.cam_method.value = "gradcam"
    made = _analyse(qtbot, analyze)

    def other_cam() -> None:
        analyze.cam_method.value = "none"

    _away_and_back(qtbot, workspace.review, paths, other_cam)
    again = _prediction(viewer, "case_0")
    assert again is not None and again["label"] == made["label"]
    assert again["restored"] == "from earlier this session"


def test_a_prediction_made_with_other_tta_is_not_restored(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths, viewer, workspace = _queue_of_two(qtbot, make_napari_viewer, open_widget, tmp_path)
    analyze = workspace.analyze
    analyze.tta.value = "none"
    _analyse(qtbot, analyze)

    def other_tta() -> None:
        analyze.tta.value = "flips"

    _away_and_back(qtbot, workspace.review, paths, other_tta)
    assert _prediction(viewer, "case_0") is None
    assert analyze.table.rowCount() == 0


def test_a_prediction_saved_with_a_review_comes_back_next_day_labelled_stored(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths = queue_folder(tmp_path, 2, seed=5, shape=(48, 48))
    _viewer, workspace = _workspace(make_napari_viewer, open_widget)
    review = workspace.review
    review.load_queue(paths[0].parent)
    _shown(qtbot, review, paths[0])
    made = _analyse(qtbot, workspace.analyze)
    review.label.value = "benign" if made["label"] == "malignant" else "malignant"
    review.agreement.value = "disagree"
    assert review.save() is not None

    viewer, workspace = _workspace(make_napari_viewer, open_widget)  # the next morning
    analyze, review = workspace.analyze, workspace.review
    review.load_queue(paths[0].parent)  # resumes at the first image not reviewed
    _shown(qtbot, review, paths[1])
    review.previous_item()
    _shown(qtbot, review, paths[0])

    again = _prediction(viewer, "case_0")
    assert again["probabilities"] == pytest.approx(made["probabilities"])
    assert again["restored"] == "stored in the review database"
    assert "restored stored in the review database" in analyze.decision.text()
    assert review.model_line.value.endswith("(stored in the review database)")
    assert review.agreement.value == "disagree"  # the saved review, judged against it
    review.confidence.value = 0.95
    assert review.save() is not None
    assert len(ReviewStore().predictions()) == 1  # the new review links the stored row


def test_a_run_that_ends_after_the_queue_moved_on_stays_with_its_own_image(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    histology_model: str,
    slow_loader: Any,
    tmp_path: Path,
) -> None:
    paths = queue_folder(tmp_path, 2, seed=5, shape=(48, 48))
    viewer, workspace = _workspace(make_napari_viewer, open_widget)
    analyze, review = workspace.analyze, workspace.review
    analyze.load_model = slow_loader(1.0)
    review.load_queue(paths[0].parent)
    _shown(qtbot, review, paths[0])
    worker = analyze.run()
    review.next_item()  # while case_0 is being analysed
    _shown(qtbot, review, paths[1])
    qtbot.waitUntil(lambda: not worker.is_running, timeout=60_000)
    qtbot.wait(100)
    assert _prediction(viewer, "case_1") is None
    assert review.model_line.value.startswith("no prediction")
    review.previous_item()
    _shown(qtbot, review, paths[0])
    assert _prediction(viewer, "case_0")["restored"] == "from earlier this session"


def test_memory_offers_a_prediction_only_for_its_image_model_version_and_settings() -> None:
    from napari_pathreview.widgets._recall import PredictionMemory

    settings = {"tta": "none", "stain": "card", "qc": True}
    record = {"model_name": "m", "model_version": "2", "label": "benign", "settings": settings}
    memory = PredictionMemory()
    memory.remember("sha-a", record)
    assert memory.recall("sha-a", "m@2", dict(settings)) is record
    assert memory.recall("sha-b", "m@2", settings) is None  # another image
    assert memory.recall("sha-a", "m@1", settings) is None  # another version
    assert memory.recall("sha-a", "m@2", {**settings, "tta": "flips"}) is None  # other settings
    assert memory.recall("sha-a", "m@2", {**settings, "cam_method": "eigencam"}) is record


def test_a_cam_stays_with_its_file_when_the_next_file_has_the_same_name(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    from napari_pathreview.widgets._results import cam_layer_of

    rng = np.random.default_rng(7)
    paths = []
    for folder in ("left", "right"):  # two files called x.png: both layers are named "x"
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "x.png"
        Image.fromarray(rng.integers(60, 200, (48, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    manifest = tmp_path / "queue.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in paths))
    viewer, workspace = _workspace(make_napari_viewer, open_widget)
    analyze, review = workspace.analyze, workspace.review
    analyze.auto_run.value = False
    analyze.cam_method.value = "gradcam"
    review.load_queue(manifest)
    _shown(qtbot, review, paths[0])
    _analyse(qtbot, analyze)
    assert cam_layer_of(viewer, viewer.layers["x"]).visible

    review.next_item()
    _shown(qtbot, review, paths[1])
    assert cam_layer_of(viewer, viewer.layers["x"]) is None  # left/x.png's CAM is not this one's
    assert not any(
        layer.visible
        for layer in viewer.layers
        if (layer.metadata.get("pathreview") or {}).get("kind") == "cam"
    )
