"""Review-store fixtures: a real PostgreSQL server and a database URL per backend.

``pg_server`` uses ``$PATHREVIEW_TEST_PG_URL`` when set; otherwise it starts a throwaway
cluster (initdb into a temp dir, ``pg_ctl start`` on 127.0.0.1 and a free port, unix socket
in the temp dir) and stops it at the end of the session. initdb refuses to run as root, so
under root (here and in CI) the cluster is owned and run by the ``postgres`` system user.
It skips, saying why, only when the PostgreSQL binaries are absent or the server won't start.

``db_url`` is parametrised over ``sqlite`` and ``postgres``, so every store test runs on both;
each test gets its own fresh SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL_ENV = "PATHREVIEW_TEST_PG_URL"


def _pg_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _start_cluster(bin_dir: Path, base: Path) -> tuple[str, Path]:
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    initdb += ["-E", "UTF8", "--no-sync"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True, text=True, timeout=120)
    for attempt in range(3):  # a free port can be taken between choosing and binding it
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
        start += ["-o", options, "start"]
        try:
            subprocess.run(
                _as_postgres(start), check=True, capture_output=True, text=True, timeout=90
            )
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL maintenance database (``postgres``) we may create databases on."""
    configured = os.environ.get(PG_URL_ENV)
    if configured:
        yield configured
        return
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries (pg_ctl, initdb) not found; install Debian's postgresql "
            f"(.ci/system-deps.sh) or set {PG_URL_ENV}"
        )
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
    base = Path(tempfile.mkdtemp(prefix="pathreview-pg-"))
    data = base / "data"
    try:
        url, data = _start_cluster(bin_dir, base)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        log = base / "server.log"
        detail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        stderr = getattr(error, "stderr", "") or ""
        pytest.skip(f"could not start a throwaway PostgreSQL server: {error}; {stderr} {detail}")
    try:
        yield url
    finally:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def _admin(url: str):  # -> psycopg.Connection
    """A plain psycopg connection (autocommit) to the database ``url`` names."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    options = parsed.query.get("options")
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
        **({"options": options} if options else {}),
    )


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test (via ``search_path``), dropped afterwards.

    A schema per test is much cheaper than a database per test and just as isolated: the
    store creates its tables in the first schema on the connection's search path.
    """
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"pathreview_test_{uuid.uuid4().hex[:12]}"
    with _admin(pg_server) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    url = make_url(pg_server).update_query_dict({"options": f"-csearch_path={name}"})
    yield url.render_as_string(hide_password=False)
    with _admin(pg_server) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


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
