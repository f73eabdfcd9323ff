"""ReviewStore operations, run against SQLite and PostgreSQL alike (``db_url``)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from napari_pathreview.errors import InvalidInputError, ReviewStoreError
from napari_pathreview.io.geojson import PIXEL_ORIGIN_KEY
from napari_pathreview.review import ReviewNotFoundError, ReviewStore

PROBS = {"benign": 0.2, "malignant": 0.8}


@pytest.fixture
def store(db_url):
    with ReviewStore(db_url) as opened:
        yield opened


def test_add_image_is_keyed_by_the_sha256_of_its_bytes(store, make_image):
    path = make_image()
    sha = store.add_image(path, "histology", {"magnification": 40}, patient_id="14-22549AB")
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    facts = store.image(sha)
    assert facts.path == str(path.resolve())
    assert facts.metadata == {"magnification": 40}
    assert facts.patient_id == "14-22549AB"


def test_adding_the_same_bytes_again_is_idempotent(store, make_image, tmp_path):
    path = make_image()
    copy = tmp_path / "renamed.png"
    copy.write_bytes(path.read_bytes())
    first = store.add_image(path, "histology")
    assert store.add_image(path, "histology") == first
    assert store.add_image(copy, "histology") == first
    assert store.counts()["images"] == 1
    assert store.image(first).path == str(path.resolve())


def test_a_later_add_fills_in_an_unknown_patient_id(store, make_image):
    path = make_image()
    sha = store.add_image(path, "mammogram")
    store.add_image(path, "mammogram", patient_id="mdb001")
    assert store.image(sha).patient_id == "mdb001"


def test_prediction_label_defaults_to_the_most_probable_class(store, make_image):
    sha = store.add_image(make_image(), "histology")
    pid = store.add_prediction(sha, "demo", 2, PROBS, {"tta": "d4"})
    (record,) = store.predictions(sha)
    assert (record.id, record.predicted_label, record.model_version) == (pid, "malignant", "2")
    assert record.probabilities == PROBS and record.settings == {"tta": "d4"}


def test_prediction_label_can_come_from_a_decision_threshold(store, make_image):
    sha = store.add_image(make_image(), "histology")
    store.add_prediction(sha, "demo", "1", {"benign": 0.6, "malignant": 0.4}, {}, label="malignant")
    assert store.predictions(sha)[0].predicted_label == "malignant"


def test_review_round_trips_every_field(store, make_image):
    sha = store.add_image(make_image(), "histology", patient_id="P7")
    pid = store.add_prediction(sha, "demo", "1", PROBS, {})
    roi = {
        "type": "Feature",
        "properties": {"name": "tumour"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [0, 5], [5, 5], [0, 0]]]},
    }
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    rid = store.add_review(
        sha,
        "alice",
        "benign",
        False,
        confidence=0.75,
        notes="looks benign",
        roi_geojson=roi,
        prediction_id=pid,
    )
    (record,) = store.reviews()
    assert record.id == rid and record.reviewer == "alice" and record.label == "benign"
    assert record.agrees_with_model is False and record.confidence == 0.75
    assert record.notes == "looks benign"
    assert record.roi_geojson == {**roi, PIXEL_ORIGIN_KEY: "corner"}  # QuPath's, said so
    assert record.model == "demo@1" and record.predicted_label == "malignant"
    assert record.patient_id == "P7" and record.modality == "histology"
    assert before <= record.created_at <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_numpy_scalars_from_array_code_are_accepted(store, make_image):
    import numpy as np

    sha = store.add_image(make_image(), "histology", {"spacing": np.float32(0.25)})
    pid = store.add_prediction(sha, "demo", "1", {"benign": np.float32(0.2), "malignant": 0.8}, {})
    store.add_review(
        sha,
        "alice",
        "malignant",
        np.bool_(True),
        confidence=np.float32(0.5),
        prediction_id=np.int64(pid),
    )
    (record,) = store.reviews()
    assert (record.agrees_with_model, record.confidence, record.prediction_id) == (True, 0.5, pid)
    assert store.image(sha).metadata == {"spacing": 0.25}


def test_review_without_a_prediction_is_allowed(store, make_image):
    sha = store.add_image(make_image(), "mammogram")
    store.add_review(sha, "bob", "normal", True)
    (record,) = store.reviews()
    assert record.prediction_id is None and record.model is None


def test_prediction_and_review_are_written_together(store, make_image):
    sha = store.add_image(make_image(), "histology")
    pid, rid = store.add_prediction_and_review(
        sha, "demo", "1", PROBS, {}, "alice", "malignant", True
    )
    (record,) = store.reviews()
    assert (record.id, record.prediction_id) == (rid, pid)


def test_failed_review_of_a_new_prediction_leaves_neither_row(store, make_image):
    sha = store.add_image(make_image(), "histology")
    with pytest.raises(InvalidInputError, match="not one of the model's classes"):
        store.add_prediction_and_review(sha, "demo", "1", PROBS, {}, "alice", "normal", False)
    assert store.counts() == {"images": 1, "predictions": 0, "reviews": 0}


@pytest.fixture
def populated(store, make_image):
    """Three images; alice and bob review them against demo@1 / demo@2 at fixed times."""
    t0 = datetime(2026, 1, 10, 9, 0, tzinfo=timezone.utc)
    shas = [store.add_image(make_image(), "histology") for _ in range(3)]
    p1 = [store.add_prediction(s, "demo", "1", PROBS, {}) for s in shas]
    p2 = store.add_prediction(shas[0], "demo", "2", PROBS, {})
    store.add_review(shas[0], "alice", "malignant", True, prediction_id=p1[0], created_at=t0)
    store.add_review(
        shas[1], "alice", "benign", False, prediction_id=p1[1], created_at=t0 + timedelta(days=1)
    )
    store.add_review(
        shas[2], "bob", "benign", False, prediction_id=p1[2], created_at=t0 + timedelta(days=2)
    )
    store.add_review(
        shas[0], "bob", "malignant", True, prediction_id=p2, created_at=t0 + timedelta(days=3)
    )
    return store


def test_filter_by_reviewer(populated):
    assert [r.reviewer for r in populated.reviews(reviewer="bob")] == ["bob", "bob"]


def test_filter_by_model_name_and_version(populated):
    assert len(populated.reviews(model="demo")) == 4
    assert [r.model for r in populated.reviews(model="demo@2")] == ["demo@2"]
    assert populated.reviews(model="other") == []


def test_filter_disagreements_only(populated):
    records = populated.reviews(disagreements_only=True)
    assert [(r.reviewer, r.label) for r in records] == [("alice", "benign"), ("bob", "benign")]


def test_filter_by_label(populated):
    assert {r.label for r in populated.reviews(label="malignant")} == {"malignant"}
    assert len(populated.reviews(label="malignant")) == 2


def test_filter_by_date_range_includes_a_bare_until_day(populated):
    records = populated.reviews(since="2026-01-11", until="2026-01-12")
    assert [r.created_at.day for r in records] == [11, 12]


def test_filter_by_aware_datetimes(populated):
    since = datetime(2026, 1, 12, 10, 0, tzinfo=timezone(timedelta(hours=1)))  # 09:00 UTC
    assert [r.created_at.day for r in populated.reviews(since=since)] == [12, 13]


def test_filters_combine(populated):
    records = populated.reviews(reviewer="alice", disagreements_only=True, since="2026-01-11")
    assert [r.label for r in records] == ["benign"]


def test_reviews_are_listed_oldest_first(populated):
    times = [r.created_at for r in populated.reviews()]
    assert times == sorted(times)


def test_review_of_an_unknown_image_is_refused(store):
    with pytest.raises(ReviewNotFoundError, match="add_image first"):
        store.add_review("0" * 64, "alice", "benign", True)


def test_review_of_an_unknown_prediction_is_refused(store, make_image):
    sha = store.add_image(make_image(), "histology")
    with pytest.raises(ReviewNotFoundError, match="no prediction with id 999"):
        store.add_review(sha, "alice", "benign", True, prediction_id=999)


def test_review_linking_another_images_prediction_is_refused(store, make_image):
    sha_a = store.add_image(make_image(), "histology")
    sha_b = store.add_image(make_image(), "histology")
    pid = store.add_prediction(sha_a, "demo", "1", PROBS, {})
    with pytest.raises(InvalidInputError, match="is of image"):
        store.add_review(sha_b, "alice", "benign", True, prediction_id=pid)
    assert store.counts()["reviews"] == 0


def test_label_must_be_among_the_linked_models_classes(store, make_image):
    sha = store.add_image(make_image(), "histology")
    pid = store.add_prediction(sha, "demo", "1", PROBS, {})
    with pytest.raises(InvalidInputError, match="not one of the model's classes"):
        store.add_review(sha, "alice", "Malignant", False, prediction_id=pid)


def test_label_must_be_among_allowed_labels_when_given(store, make_image):
    sha = store.add_image(make_image(), "mammogram")
    with pytest.raises(InvalidInputError, match="not one of"):
        store.add_review(
            sha, "alice", "cancer", False, allowed_labels=("normal", "benign", "malignant")
        )
    store.add_review(
        sha, "alice", "benign", False, allowed_labels=("normal", "benign", "malignant")
    )
    assert store.counts()["reviews"] == 1


@pytest.mark.parametrize("confidence", [-0.1, 1.5, float("nan"), "high", True])
def test_confidence_outside_zero_one_is_refused(store, make_image, confidence):
    sha = store.add_image(make_image(), "histology")
    with pytest.raises(InvalidInputError, match="confidence"):
        store.add_review(sha, "alice", "benign", True, confidence=confidence)


@pytest.mark.parametrize("reviewer", ["", "   ", None])
def test_empty_reviewer_is_refused(store, make_image, reviewer):
    sha = store.add_image(make_image(), "histology")
    with pytest.raises(InvalidInputError, match="reviewer"):
        store.add_review(sha, reviewer, "benign", True)


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "Circle", "coordinates": [0, 0]}, "not a GeoJSON geometry type"),
        ({"type": "Polygon"}, "needs a 'coordinates' array"),
        ({"type": "Feature", "properties": {}}, "needs a 'geometry' member"),
        (
            {"type": "FeatureCollection", "features": [{"type": "Point"}]},
            "must be a GeoJSON Feature",
        ),
        ([1, 2], "must be a mapping"),
    ],
)
def test_malformed_geojson_is_refused(store, make_image, roi, message):
    sha = store.add_image(make_image(), "histology")
    with pytest.raises(InvalidInputError, match=message):
        store.add_review(sha, "alice", "benign", True, roi_geojson=roi)
    assert store.counts()["reviews"] == 0


def test_geojson_text_and_feature_collections_are_accepted(store, make_image):
    sha = store.add_image(make_image(), "histology")
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": None,
                "geometry": {"type": "Point", "coordinates": [3, 4]},
            },
        ],
    }
    store.add_review(
        sha, "alice", "benign", True, roi_geojson='{"type": "Point", "coordinates": [1, 2]}'
    )
    store.add_review(sha, "alice", "benign", True, roi_geojson=collection)
    assert [r.roi_geojson for r in store.reviews()] == [
        {"type": "Point", "coordinates": [1, 2], PIXEL_ORIGIN_KEY: "corner"},
        {**collection, PIXEL_ORIGIN_KEY: "corner"},
    ]


def test_probabilities_must_be_in_zero_one(store, make_image):
    sha = store.add_image(make_image(), "histology")
    with pytest.raises(InvalidInputError, match=r"must be in \[0, 1\]"):
        store.add_prediction(sha, "demo", "1", {"benign": 1.2, "malignant": -0.2}, {})


def test_unknown_modality_and_missing_file_are_refused(store, make_image, tmp_path):
    with pytest.raises(InvalidInputError, match="modality"):
        store.add_image(make_image(), "ultrasound")
    with pytest.raises(InvalidInputError, match="no image file"):
        store.add_image(tmp_path / "absent.png", "histology")


def test_unknown_image_lookup_is_a_lookup_error(store):
    with pytest.raises(LookupError, match="no image with sha256"):
        store.image("f" * 64)


def test_unsupported_url_is_refused():
    with pytest.raises(ReviewStoreError, match="unsupported review database"):
        ReviewStore("mysql://user@localhost/reviews")
