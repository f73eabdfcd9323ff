"""A review of an image with no prediction stores agrees_with_model as NULL, not "agrees"."""

from __future__ import annotations

import csv

import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.review import ReviewStore


def test_a_review_without_a_prediction_stores_null_agreement(db_url, make_image, tmp_path):
    with ReviewStore(db_url) as store:
        sha = store.add_image(make_image(), "histology")
        store.add_review(sha, "dr_n", "benign", None)
        [record] = store.reviews()
        assert record.agrees_with_model is None
        assert store.agreement().n_disagreements == 0
        assert store.reviews(disagreements_only=True) == []
        out = store.export_manifest(tmp_path / "m.csv")
    [row] = list(csv.DictReader(out.open()))
    assert row["agrees_with_model"] == "" and row["weight"] == "1.0"


def test_a_review_of_a_prediction_must_say_whether_it_agrees(db_url, make_image):
    with ReviewStore(db_url) as store:
        sha = store.add_image(make_image(), "histology")
        pid = store.add_prediction(
            sha, "m", "1", {"benign": 0.3, "malignant": 0.7}, {}, label="malignant"
        )
        with pytest.raises(InvalidInputError, match="None only when no prediction"):
            store.add_review(sha, "dr_n", "benign", None, prediction_id=pid)
