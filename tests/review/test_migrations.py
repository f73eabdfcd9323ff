"""Schema versions: a fresh database is built by the migrations, an old one upgraded on open,
a newer one refused (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import column, insert, inspect, select, table, text

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import LATEST_VERSION, ReviewStore, migrations
from napari_pathreview.review.engine import open_engines
from napari_pathreview.review.schema import schema_version


def _make_v1_database(url: str, sha: str) -> None:
    """A version-1 database holding one image and one review, as the first release wrote it."""
    engines = open_engines(url, busy_timeout_s=5.0)
    assert migrations.upgrade(engines.read, engines.write, target=1) == 1
    v1_images = table(
        "images",
        column("sha256"),
        column("path"),
        column("modality"),
        column("metadata"),
        column("added_at"),
    )
    v1_reviews = table(
        "reviews",
        column("image_sha256"),
        column("reviewer"),
        column("label"),
        column("agrees_with_model"),
        column("notes"),
        column("created_at"),
    )
    with engines.write.begin() as conn:
        assert "confidence" not in {c["name"] for c in inspect(conn).get_columns("reviews")}
        conn.execute(
            insert(v1_images).values(
                sha256=sha,
                path="/data/old.png",
                modality="histology",
                metadata="{}",
                added_at=datetime(2025, 5, 1),
            )
        )
        conn.execute(
            insert(v1_reviews).values(
                image_sha256=sha,
                reviewer="old",
                label="benign",
                agrees_with_model=True,
                notes="v1",
                created_at=datetime(2025, 5, 2),
            )
        )
    engines.read.dispose()


def test_fresh_database_is_built_at_the_latest_version(db_url):
    with ReviewStore(db_url) as store:
        assert store.schema_version == LATEST_VERSION
        with store._engines.read.connect() as conn:
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
    assert sorted(versions) == [m.version for m in migrations.MIGRATIONS]


def test_version_1_database_is_migrated_on_open_and_keeps_its_data(db_url, make_image):
    sha = "a" * 64
    _make_v1_database(db_url, sha)
    with ReviewStore(db_url) as store:
        assert store.schema_version == LATEST_VERSION
        (old,) = store.reviews()
        assert (old.reviewer, old.notes, old.confidence, old.patient_id) == (
            "old",
            "v1",
            None,
            None,
        )
        new_sha = store.add_image(make_image(), "histology", patient_id="P1")
        store.add_review(new_sha, "new", "benign", True, confidence=0.5)
        assert [r.confidence for r in store.reviews()] == [None, 0.5]
        with store._engines.read.connect() as conn:
            index_names = {i["name"] for i in inspect(conn).get_indexes("reviews")}
    assert "ix_reviews_image_reviewer_created" in index_names


def test_reopening_an_up_to_date_database_changes_nothing(db_url):
    ReviewStore(db_url).close()
    with ReviewStore(db_url) as store, store._engines.read.connect() as conn:
        assert conn.execute(select(schema_version.c.version)).scalars().all() == [1, 2, 3, 4, 5]


def test_database_newer_than_the_code_is_refused(db_url):
    with ReviewStore(db_url) as store, store._engines.write.begin() as conn:
        conn.execute(
            insert(schema_version).values(
                version=LATEST_VERSION + 1, description="from the future", applied_at=datetime.now()
            )
        )
    with pytest.raises(ReviewStoreError, match=r"newer than this napari-pathreview .*upgrade"):
        ReviewStore(db_url)


def test_upgrade_to_an_unknown_target_is_refused(tmp_path):
    engines = open_engines(tmp_path / "r.sqlite", busy_timeout_s=1.0)
    with pytest.raises(ReviewStoreError, match="unknown schema version"):
        migrations.upgrade(engines.read, engines.write, target=LATEST_VERSION + 1)


def test_a_failing_step_leaves_the_database_at_its_old_version(db_url):
    """Steps run in one transaction: an index the v3 step cannot create undoes the whole step."""
    engines = open_engines(db_url, busy_timeout_s=5.0)
    migrations.upgrade(engines.read, engines.write, target=2)
    with engines.write.begin() as conn:  # a table squatting on the name of a v3 index
        conn.execute(text("CREATE TABLE ix_reviews_created (x INTEGER)"))
    with pytest.raises(ReviewStoreError, match="could not open the review database"):
        ReviewStore(db_url)
    with engines.read.connect() as conn:
        assert migrations.current_version(conn) == 2
        assert inspect(conn).get_indexes("reviews") == []  # the step's first index was undone
    with engines.write.begin() as conn:
        conn.execute(text("DROP TABLE ix_reviews_created"))
    engines.read.dispose()
    with ReviewStore(db_url) as store:
        assert store.schema_version == LATEST_VERSION
