"""Reading an SQLite review database the user cannot write (a team's file on a read-only share).

SQLite reads a WAL database through its ``-shm`` file, which it must create beside the database
when none is there, so in a folder the reader cannot write plain ``mode=ro`` cannot even open
it. There, and only there, the file is opened ``immutable``: no ``-shm``, and no locks either,
so SQLite cannot see a writer that has the same file open (the share's keeper, who may write
it, or the same file reached by another path). A checkpoint copying pages into the file while
such a read runs returns rows from two versions at once, without any error, or SQLite's
"database disk image is malformed".

The rule (:func:`read_only_uri`), chosen once per read (read-only engines keep no connection
between operations): ``mode=ro`` when the folder can be written, or when a ``-wal`` or
``-journal`` file is beside the database (a writer has it open, or a crash left work in it) —
SQLite then reads through the writer's ``-wal``/``-shm`` with proper locks and sees everything
committed. Otherwise ``immutable``, and :func:`read_steadily` checks the file did not change
while it was read: the database file (inode, size, modification and change times) and its
``-wal``/``-shm``/``-journal`` are looked at before and after, and a read they disagree on is
thrown away and made again. A writer cannot change a WAL database without a ``-wal`` file, so a
writer that appears mid-read is seen even where timestamps are coarse; a file modified less than
:data:`SETTLE_S` ago is waited for first, since a write in the same timestamp tick as the first
look would leave the times unchanged. Timestamps coarser than that (FAT's 2 s), or a file server
whose clock runs behind this machine's, defeat the wait but not the ``-wal`` check.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from napari_pathreview.errors import ReviewStoreError

T = TypeVar("T")

# Files beside an SQLite database while a writer has it open (WAL) or a crash left work in it
WORK_SUFFIXES = ("-wal", "-journal")
_WATCHED_SUFFIXES = ("-wal", "-shm", "-journal")
_IMMUTABLE = "&immutable=1"
# A file modified this recently may still be being written: many times the timestamp tick of
# local and network file systems (Linux stamps files from a clock that ticks every 1-10 ms).
SETTLE_S = 0.2
STEADY_WAIT_S = 10.0  # how long a read waits for a file that keeps changing

# The URI the current read chose, so every connection it opens uses that one (see module doc)
_chosen_uri: ContextVar[str | None] = ContextVar("pathreview_read_only_uri", default=None)

_Stat = tuple[int, int, int, int]


def read_only_uri(path: Path) -> str:
    """The SQLite URI that reads ``path`` without writing anything (rule in the module doc)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    folder_writable = os.access(path.parent, os.W_OK | os.X_OK)
    in_use = any(Path(f"{path}{suffix}").exists() for suffix in WORK_SUFFIXES)
    return uri if folder_writable or in_use else f"{uri}{_IMMUTABLE}"


def connect_uri(path: Path) -> str:
    """The URI a new read-only connection to ``path`` opens: the current read's choice."""
    return _chosen_uri.get() or read_only_uri(path)


def read_steadily(path: Path, attempt: Callable[[], T]) -> T:
    """``attempt()`` (one whole read of ``path``), made again if a writer changed the file
    under an ``immutable`` read, so no caller gets rows torn between two versions, nor the
    "database disk image is malformed" SQLite may say of a page it read half-written.

    Raises:
        ReviewStoreError: The file kept changing for :data:`STEADY_WAIT_S`, naming it.
    """
    deadline = time.monotonic() + STEADY_WAIT_S
    while True:
        uri = read_only_uri(path)
        if not uri.endswith(_IMMUTABLE):  # SQLite's own locks keep this read whole
            with _reading_as(uri):
                return attempt()
        before = _settled_state(path, deadline)
        try:
            with _reading_as(uri):
                result = attempt()
        except (sqlite3.DatabaseError, DBAPIError):
            if _state(path) == before:  # SQLite's error is about the file, not a tear
                raise
        else:
            if _state(path) == before:
                return result
        if time.monotonic() > deadline:
            raise _keeps_changing(path)


@contextmanager
def _reading_as(uri: str) -> Iterator[None]:
    token = _chosen_uri.set(uri)
    try:
        yield
    finally:
        _chosen_uri.reset(token)


def _stat(path: Path) -> _Stat | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _state(path: Path) -> tuple[_Stat | None, ...]:
    """What a writer changes: the database file and the files SQLite keeps beside it."""
    beside = (_stat(Path(f"{path}{suffix}")) for suffix in _WATCHED_SUFFIXES)
    return (_stat(path), *beside)


def _settled_state(path: Path, deadline: float) -> tuple[_Stat | None, ...]:
    """The file's state once its last modification is at least :data:`SETTLE_S` old."""
    while True:
        state = _state(path)
        main = state[0]
        age = time.time() - main[2] / 1e9 if main is not None else SETTLE_S
        # A modification time far in the future is another clock's (a file server's): the
        # age says nothing then, and the before/after comparison still holds.
        if age >= SETTLE_S or age < -SETTLE_S:
            return state
        if time.monotonic() > deadline:
            raise _keeps_changing(path)
        time.sleep(SETTLE_S - age)


def _keeps_changing(path: Path) -> ReviewStoreError:
    return ReviewStoreError(
        f"could not read the review database {path}: it kept changing for {STEADY_WAIT_S:g} s "
        "while being read. Its folder is read-only to you, so SQLite cannot coordinate with "
        "whoever is writing it, and nothing torn was shown. Try again when they are done, or "
        "read a copy of it."
    )
