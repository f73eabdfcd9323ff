"""Agreement statistics (Cohen's kappa) and the training-manifest export."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone

import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.review import MANIFEST_COLUMNS, ReviewStore
from napari_pathreview.review.stats import kappa

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
PROBS_M = {"benign": 0.1, "malignant": 0.9}
PROBS_B = {"benign": 0.9, "malignant": 0.1}


@pytest.fixture
def team(db_url, make_image):
    """Four images; the model says b, m, m, m; alice says b, b, m, m; bob says b, m, m, m.

    Alice first labelled image 0 "malignant" and later corrected it to "benign".
    """
    store = ReviewStore(db_url)
    shas = [store.add_image(make_image(), "histology", patient_id=f"P{i}") for i in range(4)]
    model_says = ["benign", "malignant", "malignant", "malignant"]
    pids = [
        store.add_prediction(s, "demo", "1", PROBS_B if m == "benign" else PROBS_M, {})
        for s, m in zip(shas, model_says, strict=True)
    ]
    plan = {
        "alice": ["benign", "benign", "malignant", "malignant"],
        "bob": ["benign", "malignant", "malignant", "malignant"],
    }
    store.add_review(shas[0], "alice", "malignant", False, prediction_id=pids[0], created_at=T0)
    for day, (reviewer, labels) in enumerate(plan.items(), start=1):
        for i, (sha, label) in enumerate(zip(shas, labels, strict=True)):
            store.add_review(
                sha,
                reviewer,
                label,
                label == model_says[i],
                prediction_id=pids[i],
                created_at=T0 + timedelta(days=day, minutes=i),
                roi_geojson={"type": "Point", "coordinates": [i, i]} if i == 1 else None,
            )
    yield store, shas
    store.close()


def test_kappa_between_reviewers_uses_their_latest_labels(team):
    store, _ = team
    stats = store.agreement()
    (pair,) = stats.reviewer_pairs
    assert (pair.rater_a, pair.rater_b, pair.n) == ("alice", "bob", 4)
    assert pair.observed_agreement == pytest.approx(0.75)
    assert pair.kappa == pytest.approx(0.5)  # (0.75 - 0.5) / (1 - 0.5)


def test_kappa_of_each_reviewer_against_the_model(team):
    store, _ = team
    by_name = {k.rater_a: k for k in store.agreement().reviewer_vs_model}
    assert by_name["bob"].kappa == pytest.approx(1.0)
    assert by_name["alice"].kappa == pytest.approx(0.5)
    assert {k.rater_b for k in by_name.values()} == {"model"}


def test_disagreement_rate_counts_latest_reviews(team):
    stats = team[0].agreement()
    assert (stats.n_reviews, stats.n_images, stats.n_reviewers) == (8, 4, 2)
    assert stats.n_disagreements == 1 and stats.disagreement_rate == pytest.approx(1 / 8)


def test_agreement_honours_filters(team):
    stats = team[0].agreement(reviewer="bob")
    assert stats.reviewer_pairs == () and stats.n_disagreements == 0


def test_kappa_is_undefined_without_shared_items_or_label_variety():
    assert kappa("a", "b", [], []).kappa is None
    constant = kappa("a", "b", ["benign"] * 3, ["benign"] * 3)
    assert constant.kappa is None and constant.observed_agreement == 1.0
    assert kappa("a", "b", ["x", "y"], ["y", "x"]).kappa == pytest.approx(-1.0)


def _read(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_manifest_has_one_row_per_image_and_reviewer_with_the_latest_label(team, tmp_path):
    store, shas = team
    rows = _read(store.export_manifest(tmp_path / "manifest.csv"))
    assert len(rows) == 8
    alice_first = next(r for r in rows if r["reviewer"] == "alice" and r["sha256"] == shas[0])
    assert alice_first["label"] == "benign"  # the correction, not the first call
    assert {r["patient_id"] for r in rows} == {"P0", "P1", "P2", "P3"}


def test_manifest_columns_are_what_training_reads(team, tmp_path):
    path = team[0].export_manifest(tmp_path / "manifest.csv")
    with open(path, encoding="utf-8") as stream:
        header = stream.readline().strip().split(",")
    assert header == list(MANIFEST_COLUMNS)
    assert header[:8] == [
        "path",
        "sha256",
        "label",
        "patient_id",
        "modality",
        "roi_geojson",
        "weight",
        "agrees_with_model",
    ]


def test_disagreements_get_the_configured_weight(team, tmp_path):
    rows = _read(team[0].export_manifest(tmp_path / "m.csv", disagreement_weight=3.0))
    weights = {(r["reviewer"], r["agrees_with_model"], r["weight"]) for r in rows}
    assert weights == {("alice", "true", "1.0"), ("alice", "false", "3.0"), ("bob", "true", "1.0")}


def test_manifest_paths_exist_and_roi_is_geojson_text(team, tmp_path):
    rows = _read(team[0].export_manifest(tmp_path / "m.csv"))
    assert all(__import__("pathlib").Path(r["path"]).is_file() for r in rows)
    rois = [json.loads(r["roi_geojson"]) for r in rows if r["roi_geojson"]]
    point = {"type": "Point", "coordinates": [1, 1], "pathreview_pixel_origin": "corner"}
    assert rois == [point] * 2


def test_manifest_export_honours_filters(team, tmp_path):
    rows = _read(team[0].export_manifest(tmp_path / "m.csv", disagreements_only=True))
    assert [(r["reviewer"], r["label"]) for r in rows] == [("alice", "benign")]


@pytest.mark.parametrize("weight", [-1.0, float("inf"), "2"])
def test_invalid_disagreement_weight_is_refused(team, tmp_path, weight):
    with pytest.raises(InvalidInputError, match="disagreement_weight"):
        team[0].export_manifest(tmp_path / "m.csv", disagreement_weight=weight)
    assert not (tmp_path / "m.csv").exists()


def test_a_manifest_path_that_is_a_folder_is_refused_by_name(team, tmp_path) -> None:
    folder = tmp_path / "qa"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match=r"is a folder; give a file name, e\.g\. .*\.csv"):
        team[0].export_manifest(folder)
    assert list(folder.iterdir()) == []
