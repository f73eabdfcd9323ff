"""Review-store fixtures: a database URL per backend, small images, a stalling PostgreSQL link.

The PostgreSQL server itself (``pg_server``, ``pg_url``) is ``tests/postgres_server.py``'s,
offered to every folder by the root ``conftest.py``.

``db_url`` is parametrised over ``sqlite`` and ``postgres``, so every store test runs on both;
each test gets its own fresh SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reviews.sqlite'}"
    return request.getfixturevalue("pg_url")


def write_png(path: Path, index: int) -> Path:
    """A small real RGB PNG whose pixels (hence bytes and sha256) depend on ``index``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def make_image(tmp_path: Path):
    """Factory of distinct small PNG files: ``make_image()`` → a new path each call."""
    counter = iter(range(1_000_000))

    def make(name: str | None = None) -> Path:
        index = next(counter)
        return write_png(tmp_path / "images" / (name or f"image_{index}.png"), index)

    return make


class StallingProxy:
    """A TCP relay to a real server that can stop relaying while keeping every connection
    open: what a client sees when the server hangs or the tunnel to it stalls mid-session."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._relaying = threading.Event()
        self._relaying.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self._relaying.clear()

    def resume(self) -> None:
        self._relaying.set()

    def close(self) -> None:
        self._relaying.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    break
                self._relaying.wait()  # while stalled, hold the bytes: nobody answers
                sink.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def stalling_pg_url(pg_url: str) -> Iterator[tuple[str, StallingProxy]]:
    """``pg_url`` reached through a :class:`StallingProxy`, and the proxy."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    proxy = StallingProxy(url.host or "127.0.0.1", int(url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield proxied, proxy
    proxy.close()
