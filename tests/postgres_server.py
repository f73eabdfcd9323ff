"""A real PostgreSQL server for the tests of the review store and of the Review dock.

``pg_server`` uses ``$PATHREVIEW_TEST_PG_URL`` when set; otherwise it starts a throwaway
cluster (initdb into a temp dir, ``pg_ctl start`` on 127.0.0.1 and a free port, unix socket
in the temp dir) and stops it at the end of the session. initdb refuses to run as root, so
under root (here and in CI) the cluster is owned and run by the ``postgres`` system user.
It skips, saying why, only when the PostgreSQL binaries are absent or the server won't start.
``pg_url`` gives each test a fresh schema on it. The root ``conftest.py`` offers both fixtures
to every test folder; ``admin`` is the plain connection tests and child processes set up with.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
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


def admin(url: str):  # -> psycopg.Connection
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
    with admin(pg_server) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    url = make_url(pg_server).update_query_dict({"options": f"-csearch_path={name}"})
    yield url.render_as_string(hide_password=False)
    with admin(pg_server) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
