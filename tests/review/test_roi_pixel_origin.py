"""Review ROIs are stored in QuPath's pixel convention and train on the pixels drawn;
ROIs stored before the convention was written down keep their pixels after the upgrade."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import column, insert, table

from napari_pathreview.explain.masks import mask_from_shapes
from napari_pathreview.io.geojson import (
    PIXEL_ORIGIN_KEY,
    parse_geojson_rois,
    rois_from_shapes,
    rois_to_geojson,
)
from napari_pathreview.review import ReviewStore, migrations
from napari_pathreview.review.engine import open_engines
from napari_pathreview.training.patches import geojson_rois, rois_mask


@pytest.fixture
def store(db_url):
    with ReviewStore(db_url) as opened:
        yield opened


NAPARI_SQUARE = np.array([[-0.5, -0.5], [-0.5, 9.5], [9.5, 9.5], [9.5, -0.5]])  # pixels 0..9


def test_review_roi_is_stored_as_the_qupath_square(store, make_image) -> None:
    sha = store.add_image(make_image(), "histology")
    drawn = rois_to_geojson(rois_from_shapes([NAPARI_SQUARE], ["polygon"]))
    store.add_review(sha, "alice", "malignant", True, roi_geojson=drawn)
    (record,) = store.reviews()
    ring = record.roi_geojson["features"][0]["geometry"]["coordinates"][0]
    assert sorted(map(tuple, ring[:-1])) == [(0, 0), (0, 10), (10, 0), (10, 10)]
    assert record.roi_geojson[PIXEL_ORIGIN_KEY] == "corner"


def test_review_roi_retrains_on_the_pixels_it_was_drawn_over(
    store, make_image, tmp_path: Path
) -> None:
    sha = store.add_image(make_image(), "histology")
    drawn = rois_to_geojson(rois_from_shapes([NAPARI_SQUARE], ["polygon"]))
    store.add_review(sha, "alice", "malignant", True, roi_geojson=drawn)
    exported = json.dumps(store.reviews()[0].roi_geojson)  # the manifest's roi_geojson cell
    mask = rois_mask(geojson_rois(exported, tmp_path, "review"), (20, 20), 1.0, "review")
    np.testing.assert_array_equal(mask, mask_from_shapes([NAPARI_SQUARE], "polygon", (20, 20)))
    assert mask.sum() == 100


def _make_v4_database_with_roi(url: str, roi: dict) -> None:
    """A version-4 database holding one review whose ROI the old widget wrote (napari's)."""
    engines = open_engines(url, busy_timeout_s=5.0)
    assert migrations.upgrade(engines.read, engines.write, target=4) == 4
    images = table(
        "images",
        *map(column, ("sha256", "path", "modality", "metadata", "added_at")),
    )
    reviews = table(
        "reviews",
        *map(
            column,
            ("image_sha256", "reviewer", "label", "notes", "roi_geojson", "created_at"),
        ),
    )
    with engines.write.begin() as conn:
        conn.execute(
            insert(images).values(
                sha256="b" * 64,
                path="/data/old.png",
                modality="histology",
                metadata="{}",
                added_at=datetime(2025, 5, 1),
            )
        )
        conn.execute(
            insert(reviews).values(
                image_sha256="b" * 64,
                reviewer="old",
                label="malignant",
                notes="v4",
                roi_geojson=json.dumps(roi),
                created_at=datetime(2025, 5, 2),
            )
        )
    engines.read.dispose()


def test_roi_stored_before_version_5_covers_the_same_pixels_after_the_upgrade(db_url) -> None:
    old_ring = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]  # read as napari's by old code
    old_roi = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [old_ring]}}
    before = mask_from_shapes([np.array(old_ring)[:-1, ::-1]], "polygon", (20, 20))
    _make_v4_database_with_roi(db_url, old_roi)
    with ReviewStore(db_url) as store:
        (record,) = store.reviews()
    assert record.roi_geojson["geometry"]["coordinates"][0][0] == [0.5, 0.5]
    assert record.roi_geojson[PIXEL_ORIGIN_KEY] == "corner"
    rois = parse_geojson_rois(record.roi_geojson)
    after = mask_from_shapes([r.data for r in rois], "polygon", (20, 20))
    np.testing.assert_array_equal(after, before)
