"""A limit on how long a PostgreSQL server may leave a statement unanswered.

libpq's ``connect_timeout`` covers only the connection handshake. A server that hangs later (a
stopped backend, a stalled tunnel, a VPN that dropped away) leaves a connected client waiting
for ever on its socket: libpq has no per-statement client-side limit, and the server's own
``statement_timeout`` cannot fire on a server that is not running. So each store operation runs
under an :class:`AnswerDeadline`: if it outlasts the limit, the sockets of the connections that
are waiting for an answer are shut down, libpq's wait returns with a lost connection, the pool
discards those connections, and the store reports the server as not answering.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)


class AnswerDeadline:
    """Closes the waiting connections of ``engine`` when an operation outlasts ``seconds``."""

    def __init__(self, engine: Engine, seconds: float) -> None:
        self.seconds = float(seconds)
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        event.listen(engine, "connect", self._track)

    def _track(self, dbapi_connection: Any, _record: Any) -> None:
        with self._lock:
            self._connections.add(dbapi_connection)

    @contextlib.contextmanager
    def guard(self) -> Iterator[threading.Event]:
        """Run the body under the limit; the event yielded is set if the limit struck."""
        expired = threading.Event()

        def strike() -> None:
            expired.set()
            with self._lock:
                waiting = [c for c in self._connections if _awaits_answer(c)]
            for connection in waiting:
                _shut_down(connection)
            logger.warning(
                "review database: no answer for %.0f s; closed %d waiting connection(s)",
                self.seconds,
                len(waiting),
            )

        timer = threading.Timer(self.seconds, strike)
        timer.daemon = True
        timer.start()
        try:
            yield expired
        finally:
            timer.cancel()


def _awaits_answer(connection: Any) -> bool:
    """Whether a psycopg connection has sent a command and not yet had its answer."""
    from psycopg import pq

    try:
        return connection.pgconn.transaction_status == pq.TransactionStatus.ACTIVE
    except Exception:  # noqa: BLE001 - a closed connection waits for nothing
        return False


def _shut_down(connection: Any) -> None:
    """Shut the connection's socket both ways, so a blocked read returns at once."""
    try:
        duplicate = os.dup(connection.fileno())
    except Exception:  # noqa: BLE001 - already closed
        return
    with socket.socket(fileno=duplicate) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
