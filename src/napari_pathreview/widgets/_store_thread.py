"""Database calls of the widgets, made off the GUI thread while the viewer stays live.

A review database can keep a call waiting for seconds: another reviewer's write lock on the
SQLite file, or a PostgreSQL server that stopped answering (up to libpq's connect timeout).
On the GUI thread napari would freeze for that long. :func:`wait_in_store_thread` runs the
call in one dedicated thread and, if it takes longer than a glance, spins a local Qt event
loop — as a modal dialog does — so the canvas repaints and keys and mouse still work, while
the caller keeps a plain synchronous result (the review id, or the error to notify). One
thread serves every call, so calls run in the order they were made and never race each other
on a connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")

BLOCK_S = 0.05  # a call quicker than this (a healthy database) just blocks: nobody notices
POLL_MS = 10  # how often the local event loop looks whether the call has returned

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _store_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pathreview-store")
        return _executor


def wait_in_store_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in the store thread; returns its result or raises its error here.

    The first 50 ms are simply waited for; after that Qt events keep being processed until it
    returns (nested calls are fine: each waits for its own result). Callers guard against
    re-entry where it matters (a second Save press).
    """
    from qtpy.QtCore import QEventLoop, QTimer

    future: Future[T] = _store_executor().submit(function, *args)
    wait([future], timeout=BLOCK_S)  # most calls end here: no event is handled re-entrantly
    if not future.done():
        loop, poll = QEventLoop(), QTimer()

        def quit_when_done() -> None:
            if future.done():
                loop.quit()

        # Polled from this thread rather than woken from the store thread: no Qt object is
        # ever touched off the GUI thread, and 10 ms is nothing next to a database call.
        poll.timeout.connect(quit_when_done)
        poll.start(POLL_MS)
        while not future.done():
            loop.exec()
        poll.stop()
    return future.result()
