"""Bad input to the review store and its CLI: refused with a clear error, nothing created.

Each case is generated here (no fixtures on disk). CLI cases run the console script and
check the exit status, that stderr names the offending file/key, and that it holds no
traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from napari_pathreview.errors import InvalidInputError, ReviewStoreError
from napari_pathreview.review import ReviewStore
from napari_pathreview.review.manifest import DEFAULT_DISAGREEMENT_WEIGHT

CLI = [sys.executable, "-m", "napari_pathreview.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def image_sha(db_url: str, make_image) -> tuple[ReviewStore, str]:
    store = ReviewStore(db_url)
    yield store, store.add_image(make_image(), "histology")
    store.close()


REVIEW_CASES = [
    pytest.param({"reviewer": "dr\x00who"}, "reviewer", id="nul-in-reviewer"),
    pytest.param({"notes": "fine\x00"}, "notes", id="nul-in-notes"),
    pytest.param({"label": "be\x00nign"}, "label", id="nul-in-label"),
    pytest.param(
        {"created_at": datetime.now(timezone.utc) + timedelta(days=2)},
        "created_at",
        id="created-in-the-future",
    ),
    pytest.param({"created_at": "2999-01-01"}, "created_at", id="created-year-2999"),
]


@pytest.mark.parametrize(("change", "key"), REVIEW_CASES)
def test_bad_review_is_refused_naming_the_field(image_sha, change, key) -> None:
    store, sha = image_sha
    fields = {"reviewer": "dr-a", "label": "benign", "agrees_with_model": None, "notes": ""}
    fields.update(change)
    created_at = fields.pop("created_at", None)
    with pytest.raises(InvalidInputError, match=key):
        store.add_review(sha, **fields, created_at=created_at)
    assert store.counts()["reviews"] == 0


def test_review_from_a_few_seconds_ahead_clock_is_accepted(image_sha) -> None:
    store, sha = image_sha
    soon = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert store.add_review(sha, "dr-a", "benign", None, created_at=soon) > 0


def test_reader_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "new" / "folder" / "typo.sqlite"
    with pytest.raises(ReviewStoreError, match="typo.sqlite"):
        ReviewStore(missing, create=False)
    assert not missing.parent.exists()


@pytest.mark.parametrize("command", ["stats", "list", "export"])
def test_read_commands_refuse_a_missing_db_and_create_nothing(tmp_path: Path, command) -> None:
    missing = tmp_path / "typo" / "reviews.sqlite"
    extra = ["--out", str(tmp_path / "m.csv")] if command == "export" else []
    result = _run("review", command, "--db", str(missing), *extra)
    assert result.returncode != 0
    assert str(missing) in result.stderr and "Traceback" not in result.stderr
    assert not missing.parent.exists()
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("command", ["stats", "export"])
def test_read_commands_leave_an_empty_file_given_as_db_untouched(tmp_path: Path, command) -> None:
    """SQLite takes an empty file for a new database: `--db notes.txt` (just created, or a
    mistyped path to some empty file) used to become a 45 KB review database."""
    empty = tmp_path / "notes.txt"
    empty.touch()
    extra = ["--out", str(tmp_path / "m.csv")] if command == "export" else []
    result = _run("review", command, "--db", str(empty), *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{empty} is an empty file" in result.stderr
    assert empty.stat().st_size == 0 and not (tmp_path / "m.csv").exists()


def _other_programs_db(path: Path) -> Path:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE bookmarks (url TEXT)")
        conn.commit()
    return path


@pytest.mark.parametrize("command", ["stats", "export"])
def test_read_commands_leave_another_programs_sqlite_file_untouched(tmp_path, command) -> None:
    """`--db places.sqlite` (a browser's, say) used to get the review tables built into it and
    be switched to WAL journaling, and the command then reported an empty review store."""
    other = _other_programs_db(tmp_path / "places.sqlite")
    before = other.read_bytes()
    extra = ["--out", str(tmp_path / "m.csv")] if command == "export" else []
    result = _run("review", command, "--db", str(other), *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{other} is an SQLite database of another program (tables: bookmarks)" in (
        result.stderr
    )
    assert other.read_bytes() == before and not (tmp_path / "m.csv").exists()


def test_a_writer_refuses_another_programs_sqlite_file(tmp_path) -> None:
    other = _other_programs_db(tmp_path / "places.sqlite")
    with pytest.raises(ReviewStoreError, match="places.sqlite is an SQLite database of another"):
        ReviewStore(other)


def test_export_weight_default_is_the_widgets() -> None:
    from napari_pathreview.cli import build_parser
    from napari_pathreview.widgets.review import ReviewWidget

    args = build_parser().parse_args(["review", "export", "--out", "x.csv"])
    widget_default = inspect.signature(ReviewWidget.export_disagreements).parameters["weight"]
    assert args.disagreement_weight == DEFAULT_DISAGREEMENT_WEIGHT == 2.0
    assert widget_default.default == DEFAULT_DISAGREEMENT_WEIGHT


@pytest.mark.parametrize("weight", ["-1", "nan", "inf"])
def test_export_refuses_a_bad_disagreement_weight(tmp_path: Path, weight: str) -> None:
    db = tmp_path / "r.sqlite"
    ReviewStore(db).close()
    result = _run("review", "export", "--db", str(db), "--out", str(tmp_path / "m.csv"),
                  "--disagreement-weight", weight)  # fmt: skip
    assert result.returncode != 0
    assert "disagreement_weight" in result.stderr and "Traceback" not in result.stderr


def test_a_folder_given_as_the_database_is_refused_naming_the_file_in_it(tmp_path) -> None:
    """`--db ~/team/reviews` (the folder, not the file in it) used to end in SQLite's
    "unable to open database file", naming neither the folder nor the file to give."""
    inside = tmp_path / "reviews.sqlite"
    ReviewStore(inside).close()
    with pytest.raises(ReviewStoreError) as raised:
        ReviewStore(tmp_path)
    assert f"{tmp_path} is a folder, not a review database" in str(raised.value)
    assert f"the one in it is {inside}" in str(raised.value)


def test_read_commands_refuse_a_folder_given_as_db(tmp_path) -> None:
    result = _run("review", "stats", "--db", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path} is a folder, not a review database" in result.stderr
