"""Opening the review database: URL resolution and per-connection settings.

SQLite (the default, one file in the home folder) gets, on every new connection, WAL
journaling (readers never block the writer), foreign keys on (SQLite ships them off) and a
busy timeout (a writer waits for another's lock instead of failing at once). Python's
``sqlite3`` module manages transactions itself and does not emit ``BEGIN`` before DDL, so we
switch that off and emit ``BEGIN`` ourselves: ``BEGIN IMMEDIATE`` for writes, which takes the
write lock up front and so never fails half-way through a transaction on a lock upgrade.

PostgreSQL (a team sharing one server) gets a ``lock_timeout`` per connection, so a table
locked by someone else fails after the same wait instead of hanging the viewer, and a
``connect_timeout`` (unless the URL sets its own), because libpq otherwise waits for ever on a
server that accepts the connection but never answers — a hung server or a stalled tunnel would
freeze the Review widget and the CLI with it. A server that stops answering later, mid-session,
is cut off by the store's :class:`~.deadline.AnswerDeadline` (``PG_ANSWER_TIMEOUT_S``).

An SQLite file the user cannot write (a team's database on a read-only share) is opened
read-only, so it can still be listed, counted and exported, and every write is refused up front
naming the file. How it is read without writing anything beside it, and without tearing under a
writer it cannot lock out, is :mod:`~.shared_sqlite`'s (read-only engines keep no connection
between operations, so each read chooses afresh).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.home import pathreview_home
from napari_pathreview.review.deadline import AnswerDeadline
from napari_pathreview.review.schema import schema_version
from napari_pathreview.review.shared_sqlite import connect_uri, read_steadily

logger = logging.getLogger(__name__)
T = TypeVar("T")

DB_URL_ENV = "PATHREVIEW_DB_URL"
# SQLSTATEs PostgreSQL uses for "someone else holds it": lock_timeout, serialisation, deadlock.
_PG_RETRY_STATES = frozenset({"55P03", "40001", "40P01"})
_SQLITE_LOCK_WORDS = ("database is locked", "database is busy", "database table is locked")
# SQLite's words for a file it could only open read-only, and for one it could not open at all
_SQLITE_READ_ONLY_WORDS = ("attempt to write a readonly database",)
_SQLITE_CANNOT_OPEN_WORDS = ("unable to open database file",)
# PostgreSQL: a read-only transaction (a hot standby, default_transaction_read_only), and a
# role without the privilege to write
_PG_READ_ONLY_STATE = "25006"
_PG_NO_PRIVILEGE_STATE = "42501"
DEFAULT_FILENAME = "reviews.sqlite"
PG_CONNECT_TIMEOUT_S = 10  # libpq's connect_timeout where the URL gives none
PG_ANSWER_TIMEOUT_S = 30.0  # the longest one store operation waits for a connected server
_WRITE_OPTION = "pathreview_write"


@dataclass(frozen=True)
class Engines:
    """Two views of one connection pool: plain reads and ``BEGIN IMMEDIATE`` writes."""

    read: Engine
    write: Engine
    url: URL
    deadline: AnswerDeadline | None = None  # PostgreSQL: how long a server may stay silent
    unwritable: str | None = None  # SQLite opened read-only: why it cannot be written

    def steady(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, one whole read; of an SQLite file opened read-only, never torn by a
        writer it cannot lock out (:func:`~.shared_sqlite.read_steadily`)."""
        if self.unwritable is None:
            return attempt()
        return read_steadily(Path(self.url.database or ""), attempt)

    @property
    def display(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)


def resolve_url(url: str | os.PathLike[str] | None) -> URL:
    """The database URL: the argument, else ``$PATHREVIEW_DB_URL``, else the home SQLite file.

    A plain filesystem path means an SQLite file there; ``postgresql://`` without a driver
    means psycopg 3 (the driver the ``postgres`` extra installs).
    """
    raw = url if url is not None else os.environ.get(DB_URL_ENV) or None
    if raw is None:
        return URL.create("sqlite", database=str(pathreview_home() / DEFAULT_FILENAME))
    text = os.fspath(raw)
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        return URL.create("sqlite", database=str(path))
    try:
        parsed = make_url(text)
    except ArgumentError as error:
        raise ReviewStoreError(f"not a database URL: {text!r} ({error})") from error
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_unwritable(path: Path) -> str | None:
    """Why we cannot write the existing SQLite file ``path``; None when we can (or it is absent).

    SQLite needs the folder too: it creates its ``-wal``/``-shm`` (or ``-journal``) files there.
    """
    if not path.is_file():
        return None
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its folder {path.parent} is read-only, and SQLite writes its journal beside it"
    return None


def _sqlite_listeners(engine: Engine, busy_timeout_ms: int, read_only: Path | None) -> None:
    if read_only is not None:

        @event.listens_for(engine, "do_connect")
        def _open_read_only(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict) -> None:
            cargs[:] = [connect_uri(read_only)]
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        try:
            # PRAGMA takes no bound parameters; the value is an int we computed, not user text.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if read_only is None:  # a journal mode is written into the file; reading needs none
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; survives crashes
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _postgres_listeners(engine: Engine, lock_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout_ms)}ms",)
            )
        finally:
            cursor.close()
        dbapi_connection.commit()


def open_engines(
    url: str | os.PathLike[str] | None, busy_timeout_s: float, create: bool = True
) -> Engines:
    """Create the engines for ``url`` with the per-connection settings above.

    Args:
        url: As for :func:`resolve_url`.
        busy_timeout_s: How long one attempt waits for another writer's lock.
        create: Whether a missing SQLite file may be created; readers pass ``False`` so a
            typo in ``--db`` is an error instead of a new, empty database in a new folder.

    Raises:
        ReviewStoreError: Unsupported backend, or an SQLite path refused by
            :func:`_sqlite_path`. An existing SQLite file we cannot write is opened read-only
            (``Engines.unwritable`` says why), not refused: reading it is still useful.
    """
    resolved = resolve_url(url)
    timeout_ms = max(0, int(busy_timeout_s * 1000))
    deadline = unwritable = None
    backend = resolved.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(resolved, create)
        unwritable = sqlite_unwritable(path)
        # The sqlite3 module's own timeout would wait too; PRAGMA busy_timeout is the one we set.
        # Read-only: a connection per operation, so each read chooses how to open it afresh.
        pool = {"poolclass": NullPool} if unwritable else {}
        engine = create_engine(resolved, connect_args={"timeout": busy_timeout_s}, **pool)
        _sqlite_listeners(engine, timeout_ms, path if unwritable else None)
    elif backend == "postgresql":
        try:
            connect_args = {}
            if "connect_timeout" not in resolved.query:
                connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            engine = create_engine(resolved, pool_pre_ping=True, connect_args=connect_args)
        except ModuleNotFoundError as error:
            raise ReviewStoreError(
                f"PostgreSQL needs the psycopg driver: pip install 'napari-pathreview[postgres]' "
                f"({error})"
            ) from error
        _postgres_listeners(engine, timeout_ms)
        deadline = AnswerDeadline(engine, PG_ANSWER_TIMEOUT_S)
    else:
        raise ReviewStoreError(
            f"unsupported review database {resolved.render_as_string(hide_password=True)!r}: "
            "use an SQLite path or a postgresql:// URL"
        )
    write = engine.execution_options(**{_WRITE_OPTION: True})
    return Engines(read=engine, write=write, url=resolved, deadline=deadline, unwritable=unwritable)


def _sqlite_path(url: URL, create: bool) -> Path:
    """The SQLite file of ``url``, checked: a file (or, with ``create``, a place for one).

    Raises:
        ReviewStoreError: In memory, a folder, missing (unless ``create``), an empty file for a
            reader, another program's database, or no folder for it can be made or written.
    """
    database = url.database or ""
    if database in ("", ":memory:"):
        raise ReviewStoreError(
            "an in-memory SQLite review database would vanish on close; give a file path"
        )
    path = Path(database)
    if path.is_dir():
        inside = path / DEFAULT_FILENAME
        hint = f"the one in it is {inside}" if inside.is_file() else f"e.g. {inside}"
        raise ReviewStoreError(
            f"{path} is a folder, not a review database: give the database file's path ({hint})"
        )
    if not create and not path.is_file():
        raise ReviewStoreError(
            f"no review database at {database}: check the path (reviews are saved from the "
            "Review widget; a new database is created only where you ask for one)"
        )
    if not create and path.stat().st_size == 0:  # SQLite would adopt it
        raise ReviewStoreError(
            f"{database} is an empty file, not a review database: check the path (a reader "
            "never turns another file into a database)"
        )
    _refuse_foreign_sqlite(path)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReviewStoreError(f"cannot create the folder for {database}: {error}") from error
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ReviewStoreError(
            f"cannot create the review database {path}: its folder {path.parent} is read-only (a "
            "read-only share or disk?). Choose a writable place for it (PATHREVIEW_DB_URL, or "
            "--db on the command line)"
        )
    return path


def _refuse_foreign_sqlite(path: Path) -> None:
    """Refuse an SQLite file with tables but no review schema: another program's database (a
    mistyped ``--db``). Looked at read-only, before any connection of ours switches it to WAL
    or builds our tables in it; a file SQLite cannot read is left to the normal open."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"

    def list_tables() -> list[str]:
        with contextlib.closing(sqlite3.connect(connect_uri(path), uri=True)) as conn:
            return sorted(row[0] for row in conn.execute(query))

    try:
        tables = read_steadily(path, list_tables)
    except sqlite3.Error:
        return
    if tables and schema_version.name not in tables:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise ReviewStoreError(
            f"{path} is an SQLite database of another program (tables: {shown}), not a review "
            "database: check the path. Nothing was written to it"
        )


def is_lock_error(error: DBAPIError) -> bool:
    """Whether ``error`` means another session holds a lock we need (worth retrying)."""
    if getattr(error.orig, "sqlstate", None) in _PG_RETRY_STATES:
        return True
    message = str(error.orig).lower()
    return any(words in message for words in _SQLITE_LOCK_WORDS)


def unwritable_message(action: str, path: Path, why: str, said: str = "") -> str:
    """What to tell the user when ``action`` would write the SQLite file ``path`` that ``why``
    cannot be written; ``said`` is SQLite's own error, if it came to one."""
    return (
        f"could not {action}: the review database {path} cannot be written ({why}; a read-only "
        "share or disk?). Nothing was written; it can still be read (listed, counted, "
        "exported). To save, copy it to a folder you can write and use the copy, or choose "
        "another, writable database (PATHREVIEW_DB_URL, or --db on the command line)."
        + (f" SQLite said: {said}" if said else "")
    )


def failure_message(action: str, where: str, error: DBAPIError) -> str:
    """What to tell the user when ``action`` failed on the database ``where``, not for a lock.

    A database that cannot be written is named with what to do: an SQLite file (no write
    permission, a read-only share or disk; SQLite opens such a file read-only and fails at the
    first write), a PostgreSQL server that only reads (a hot standby, a database or role with
    ``default_transaction_read_only``) or a role without the privilege to write.
    """
    said = str(error.orig)
    refused = _postgres_refusal(action, where, error)
    if refused is not None:
        return refused
    path = _sqlite_file(where)
    why = None if path is None else _why_unwritable(path, said.lower())
    if why is None:
        return f"could not {action} in {where}: {said}"
    return unwritable_message(action, path, why, said)


def postgres_refusal(error: DBAPIError) -> tuple[str, str] | None:
    """Why a PostgreSQL server or role would not let us write, and what to do about it; None
    for any other error (judged by SQLSTATE)."""
    state = getattr(error.orig, "sqlstate", None)
    if state == _PG_READ_ONLY_STATE:
        why = (
            "the server only allows reading: a hot standby (replica), or a database or role "
            "with default_transaction_read_only on"
        )
        return why, "point PATHREVIEW_DB_URL (or --db) at the primary server"
    if state == _PG_NO_PRIVILEGE_STATE:
        return (
            "your database role lacks the privilege to change its tables",
            "connect as a role that may write them",
        )
    return None


def _postgres_refusal(action: str, where: str, error: DBAPIError) -> str | None:
    """The message for a PostgreSQL server or role that will not let us write; else None."""
    refusal = postgres_refusal(error)
    if refusal is None:
        return None
    why, what = refusal
    return (
        f"could not {action}: the review database {where} cannot be written ({why}). Nothing "
        f"was written. To save, {what}, or ask the database's administrator for write access. "
        f"PostgreSQL said: {str(error.orig).strip()}"
    )


def _why_unwritable(path: Path, said: str) -> str | None:
    """Why SQLite could not write ``path``, judged from its error ``said`` (lower case) and the
    file's permissions; None when the error is another one."""
    read_only = any(words in said for words in _SQLITE_READ_ONLY_WORDS)
    if not read_only and not any(words in said for words in _SQLITE_CANNOT_OPEN_WORDS):
        return None
    why = sqlite_unwritable(path)
    if why is not None:
        return why
    return "SQLite opened it read-only" if read_only else None


def _sqlite_file(where: str) -> Path | None:
    """The SQLite file of the database URL ``where`` (None for another backend)."""
    try:
        url = make_url(where)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def run_with_retries(
    attempt: Callable[[], T],
    action: str,
    where: str,
    retries: int,
    backoff_s: float,
    deadline: AnswerDeadline | None = None,
) -> T:
    """Run ``attempt`` (one whole transaction), retrying lock timeouts, mapping DB errors.

    A failed attempt has been rolled back, so running it again cannot duplicate anything.
    Under a ``deadline`` an attempt the server leaves unanswered is cut off and not retried.

    Raises:
        ReviewStoreError: Still locked after ``retries`` further attempts, no answer within
            the deadline, or any other database error, with ``action`` and ``where`` in the
            message.
    """
    pause = backoff_s
    for number in range(retries + 1):
        guard = deadline.guard() if deadline is not None else contextlib.nullcontext(None)
        try:
            with guard as expired:
                return attempt()
        except DBAPIError as error:
            if expired is not None and expired.is_set():
                raise ReviewStoreError(
                    f"could not {action}: the review database {where} did not answer for "
                    f"{deadline.seconds:g} s (a hung server or a stalled network), so its "
                    "connection was closed. If this was a save, check whether it arrived "
                    "before saving again."
                ) from error
            if not is_lock_error(error):
                raise ReviewStoreError(failure_message(action, where, error)) from error
            if number == retries:
                raise ReviewStoreError(
                    f"could not {action}: the review database {where} is locked by another "
                    f"process or session ({retries + 1} attempts). Nothing was written; close "
                    "the other writer (or wait for it) and try again."
                ) from error
            logger.warning("review database locked; retry %d of %d", number + 1, retries)
            time.sleep(pause)
            pause *= 2
        except SQLAlchemyError as error:
            raise ReviewStoreError(f"could not {action} in {where}: {error}") from error
    raise AssertionError("unreachable")  # the loop returns or raises
