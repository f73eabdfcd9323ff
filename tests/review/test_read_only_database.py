"""A review database the user cannot write (a read-only file, share or disk) can still be read
(listed, counted, exported); a write is refused with a message naming the file, saying it is
read-only and what to do, not SQLite's bare words, and nothing is written beside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from napari_pathreview.cli import main
from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import LATEST_VERSION, ReviewStore, migrations
from napari_pathreview.review.engine import open_engines


def _database(tmp_path: Path) -> Path:
    """A review database, closed (SQLite removes its -wal and -shm files)."""
    path = tmp_path / "share" / "reviews.sqlite"
    ReviewStore(path).close()
    return path


def _reviewed(tmp_path: Path, make_image: Callable[[], Path], notes: str = "first") -> Path:
    """A closed review database holding one review with ``notes``."""
    path = tmp_path / "share" / "reviews.sqlite"
    with ReviewStore(path) as store:
        store.add_review(
            store.add_image(make_image(), "histology"), "dr_a", "benign", None, notes=notes
        )
    return path


def _on_a_read_only_share(database: Path, read_only: Callable[[Path], None]) -> None:
    read_only(database)
    read_only(database.parent)


def test_saving_into_a_read_only_database_file_names_it_and_says_what_to_do(
    tmp_path: Path, read_only: Callable[[Path], None], make_image: Callable[[], Path]
) -> None:
    database = _database(tmp_path)
    read_only(database)
    store = ReviewStore(database, retries=0)
    with pytest.raises(ReviewStoreError) as raised:
        store.add_image(make_image(), "histology")
    message = str(raised.value)
    assert f"review database {database} cannot be written (the file is read-only" in message
    assert "copy it to a folder you can write" in message
    assert "writable database" in message


def test_a_database_on_a_read_only_share_can_be_listed_and_counted(
    tmp_path: Path, read_only: Callable[[Path], None], make_image: Callable[[], Path]
) -> None:
    database = _reviewed(tmp_path, make_image)
    _on_a_read_only_share(database, read_only)
    with ReviewStore(database, create=False) as store:
        assert [r.notes for r in store.reviews()] == ["first"]
        assert store.counts()["reviews"] == 1
        assert store.read_only


def test_reading_a_read_only_share_leaves_no_file_beside_the_database(
    tmp_path: Path, read_only: Callable[[Path], None], make_image: Callable[[], Path]
) -> None:
    database = _reviewed(tmp_path, make_image)
    _on_a_read_only_share(database, read_only)
    with ReviewStore(database, create=False) as store:
        store.reviews()
    assert [p.name for p in database.parent.iterdir()] == [database.name]


def test_saving_into_a_database_on_a_read_only_share_is_refused_and_writes_nothing(
    tmp_path: Path, read_only: Callable[[Path], None], make_image: Callable[[], Path]
) -> None:
    database = _reviewed(tmp_path, make_image)
    image = make_image()
    _on_a_read_only_share(database, read_only)
    with ReviewStore(database) as store:
        with pytest.raises(ReviewStoreError) as raised:
            store.add_image(image, "histology")
        assert store.counts()["images"] == 1
    message = str(raised.value)
    assert f"could not add the image: the review database {database} cannot be written" in message
    assert "it can still be read" in message and "copy it to a folder you can write" in message


def test_a_reader_on_a_read_only_share_sees_what_an_open_writer_committed(
    tmp_path: Path, read_only: Callable[[Path], None], make_image: Callable[[], Path]
) -> None:
    """A writer with the file open keeps its work in -wal: the reader must read through it
    (plain read-only), not around it (immutable)."""
    database = _reviewed(tmp_path, make_image)
    writer = ReviewStore(database)  # another user, who may write the share, has it open
    try:
        sha = writer.add_image(make_image(), "histology")
        writer.add_review(sha, "dr_b", "malignant", None, notes="second")
        _on_a_read_only_share(database, read_only)
        reader = ReviewStore(database, create=False)
        assert [r.notes for r in reader.reviews()] == ["first", "second"]
        writer.add_review(sha, "dr_b", "benign", None, notes="third")
        assert [r.notes for r in reader.reviews()] == ["first", "second", "third"]
        reader.close()
    finally:
        writer.close()


def test_an_older_database_on_a_read_only_share_says_it_needs_upgrading_where_writable(
    tmp_path: Path, read_only: Callable[[Path], None]
) -> None:
    database = tmp_path / "share" / "reviews.sqlite"
    database.parent.mkdir()
    engines = open_engines(database, busy_timeout_s=1.0)
    migrations.upgrade(engines.read, engines.write, target=LATEST_VERSION - 1)
    engines.read.dispose()
    _on_a_read_only_share(database, read_only)
    with pytest.raises(ReviewStoreError) as raised:
        ReviewStore(database, create=False)
    message = str(raised.value)
    assert f"{database} is at schema version {LATEST_VERSION - 1}, older than" in message
    assert "cannot be upgraded here" in message and "copy it to a folder you can write" in message


def test_a_new_database_in_a_read_only_folder_is_refused_naming_the_folder(
    tmp_path: Path, read_only: Callable[[Path], None]
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    read_only(folder)
    with pytest.raises(ReviewStoreError) as raised:
        ReviewStore(folder / "reviews.sqlite")
    assert f"its folder {folder} is read-only" in str(raised.value)


@pytest.mark.parametrize("command", [["stats"], ["list"], ["export", "--out", "OUT"]])
def test_review_commands_read_a_database_on_a_read_only_share(
    tmp_path: Path,
    read_only: Callable[[Path], None],
    make_image: Callable[[], Path],
    command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = _reviewed(tmp_path, make_image)
    _on_a_read_only_share(database, read_only)
    out = tmp_path / "manifest.csv"
    argv = ["review", *[str(out) if c == "OUT" else c for c in command], "--db", str(database)]
    assert main(argv) == 0, capsys.readouterr().err


def test_another_programs_database_on_a_read_only_share_is_refused_as_such(
    tmp_path: Path, read_only: Callable[[Path], None]
) -> None:
    import contextlib
    import sqlite3

    other = tmp_path / "share" / "places.sqlite"
    other.parent.mkdir()
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")  # as a browser's places.sqlite is
        conn.execute("CREATE TABLE bookmarks (url TEXT)")
        conn.commit()
    _on_a_read_only_share(other, read_only)
    with pytest.raises(ReviewStoreError, match="places.sqlite is an SQLite database of another"):
        ReviewStore(other, create=False)


@pytest.mark.timeout(120)
def test_a_reader_on_a_read_only_view_never_gets_rows_torn_by_a_writer_it_cannot_see(
    tmp_path: Path, read_only: Callable[[Path], None], make_image: Callable[[], Path]
) -> None:
    """The keeper writes the file through a path of their own while a reader reads it through
    a folder the reader cannot write (a share mounted read-only for the reader): no ``-wal`` is
    beside the reader's path, so the file is read ``immutable``, without locks. A rewrite
    checkpointed into the file mid-read must not reach the reader half old, half new."""
    import os
    import subprocess
    import sys

    keeper = tmp_path / "keeper" / "reviews.sqlite"
    with ReviewStore(keeper) as store:
        sha = store.add_image(make_image(), "histology")
        for _ in range(200):
            store.add_review(sha, "dr_a", "benign", None, notes="pass 0")
    view = tmp_path / "share" / "reviews.sqlite"
    view.parent.mkdir()
    os.link(keeper, view)  # the same file, seen from the reader's side
    read_only(view.parent)
    writer = Path(__file__).with_name("_writer.py")
    rewrite = subprocess.Popen(
        [sys.executable, str(writer), "rewrite", str(keeper), "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[set[str]] = []
    with ReviewStore(view, create=False) as reader:
        while rewrite.poll() is None:
            seen.append({r.notes for r in reader.reviews()})
        out, err = rewrite.communicate(timeout=30)
        assert rewrite.returncode == 0, err
        assert {r.notes for r in reader.reviews()} == {f"pass {int(out)}"}
    torn = [notes for notes in seen if len(notes) != 1]
    assert not torn, f"{len(torn)} of {len(seen)} reads mixed two versions: {torn[0]}"
