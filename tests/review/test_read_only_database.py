"""A review database the user cannot write (a read-only file, share or disk) is refused with
a message naming the file, saying it is read-only and what to do, not SQLite's bare words."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import ReviewStore


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a file or folder unwritable: by its mode, or for root (who ignores modes) by the
    immutable attribute, which refuses writes as a read-only mount does."""
    changed: list[tuple[Path, int]] = []

    def make(path: Path) -> None:
        changed.append((path, path.stat().st_mode))
        path.chmod(0o555 if path.is_dir() else 0o444)
        if os.access(path, os.W_OK):
            subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a file unwritable here (root without chattr)")

    yield make
    for path, mode in reversed(changed):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
        path.chmod(mode)


def _database(tmp_path: Path) -> Path:
    """A review database, closed (SQLite removes its -wal and -shm files)."""
    path = tmp_path / "share" / "reviews.sqlite"
    ReviewStore(path).close()
    return path


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
    assert "Copy it to a folder you can write" in message
    assert "writable database" in message


def test_opening_a_database_in_a_read_only_folder_names_it_and_says_what_to_do(
    tmp_path: Path, read_only: Callable[[Path], None]
) -> None:
    database = _database(tmp_path)
    read_only(database)
    read_only(database.parent)
    with pytest.raises(ReviewStoreError) as raised:
        ReviewStore(database, retries=0)
    message = str(raised.value)
    assert f"review database {database} cannot be written" in message
    assert "read-only" in message and "Copy it to a folder you can write" in message
