"""Nothing is lost or half-written: concurrent writers, a killed writer, a locked database.

Each test runs real child processes (``_writer.py``) against SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import ReviewStore

WRITER = Path(__file__).with_name("_writer.py")


def _spawn(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _expect_line(process: subprocess.Popen[str], expected: str) -> None:
    line = process.stdout.readline().strip()
    if line != expected:
        process.kill()
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"child said {line!r} instead of {expected!r}: {stderr}")


def _sqlite_path(url: str) -> str | None:
    parsed = make_url(url)
    return parsed.database if parsed.get_backend_name() == "sqlite" else None


@pytest.mark.timeout(240)
def test_two_processes_writing_500_reviews_each_lose_nothing(db_url, make_image):
    image = make_image()
    writers = [_spawn("reviews", db_url, str(image), name, "500") for name in ("ann", "ben")]
    for writer in writers:
        _expect_line(writer, "ready")
    for writer in writers:  # both start writing at once, on a database neither created alone
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        _, stderr = writer.communicate(timeout=200)
        assert writer.returncode == 0, stderr
    with ReviewStore(db_url) as store:
        assert store.counts() == {"images": 1, "predictions": 2, "reviews": 1000}
        records = store.reviews()
        for name in ("ann", "ben"):
            notes = sorted(r.notes for r in records if r.reviewer == name)
            assert notes == sorted(f"{name} #{i}" for i in range(500))


@pytest.mark.timeout(120)
def test_writer_killed_mid_batch_leaves_only_whole_reviews(db_url, make_image):
    with ReviewStore(db_url) as store:
        sha = store.add_image(make_image(), "histology")
    writer = _spawn("forever", db_url, sha)
    committed = 0
    while committed < 40:
        line = writer.stdout.readline()
        assert line, writer.stderr.read()
        committed = int(line)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    path = _sqlite_path(db_url)
    if path is not None:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with ReviewStore(db_url) as store:
        counts = store.counts()
        assert counts["reviews"] == counts["predictions"] >= committed
        for record in store.reviews():
            assert record.prediction_id is not None and record.predicted_label == "malignant"
            assert record.notes == "x" * 4000 and record.roi_geojson["type"] == "Polygon"
        store.add_review(sha, "after", "benign", True)  # still writable
        assert store.counts()["reviews"] == counts["reviews"] + 1


def _hold_lock(db_url: str) -> subprocess.Popen[str]:
    path = _sqlite_path(db_url)
    locker = _spawn("lock-sqlite", path) if path else _spawn("lock-postgres", db_url)
    _expect_line(locker, "locked")
    return locker


def _release(locker: subprocess.Popen[str]) -> None:
    locker.stdin.write("release\n")
    locker.stdin.flush()
    _, stderr = locker.communicate(timeout=30)
    assert locker.returncode == 0, stderr


@pytest.mark.timeout(120)
def test_locked_database_retries_then_fails_clearly_and_the_review_can_be_resent(
    db_url, make_image, caplog
):
    store = ReviewStore(db_url, busy_timeout_s=0.2, retries=2, retry_backoff_s=0.05)
    sha = store.add_image(make_image(), "histology")
    review = {
        "image_sha256": sha,
        "reviewer": "alice",
        "label": "benign",
        "agrees_with_model": False,
        "notes": "kept by the caller",
    }
    locker = _hold_lock(db_url)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="napari_pathreview.review.store"),
            pytest.raises(ReviewStoreError, match="locked by another process") as raised,
        ):
            store.add_review(**review)
        assert "Nothing was written" in str(raised.value) and "3 attempts" in str(raised.value)
        assert [r.getMessage() for r in caplog.records] == [
            "review database locked; retry 1 of 2",
            "review database locked; retry 2 of 2",
        ]
    finally:
        _release(locker)
    review_id = store.add_review(**review)
    (record,) = store.reviews()
    assert (record.id, record.notes) == (review_id, "kept by the caller")
    store.close()


def test_locked_database_does_not_block_readers_on_sqlite(tmp_path, make_image):
    url = f"sqlite:///{tmp_path / 'reviews.sqlite'}"
    store = ReviewStore(url, busy_timeout_s=0.2, retries=0)
    sha = store.add_image(make_image(), "histology")
    store.add_review(sha, "alice", "benign", True)
    locker = _hold_lock(url)
    try:
        assert [r.reviewer for r in store.reviews()] == ["alice"]  # WAL: readers go on
    finally:
        _release(locker)
    store.close()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite", busy_timeout_s=1.5)
    with store._engines.read.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 1500}
    store.close()


def test_roi_is_stored_as_json_text(tmp_path, make_image):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    sha = store.add_image(make_image(), "histology")
    store.add_review(
        sha, "alice", "benign", True, roi_geojson={"type": "Point", "coordinates": [1, 2]}
    )
    store.close()
    with sqlite3.connect(tmp_path / "reviews.sqlite") as conn:
        (text,) = conn.execute("SELECT roi_geojson FROM reviews").fetchone()
    assert json.loads(text) == {
        "type": "Point",
        "coordinates": [1, 2],
        "pathreview_pixel_origin": "corner",  # QuPath's convention, said so
    }
