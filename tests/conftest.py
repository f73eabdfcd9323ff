"""Fixtures shared by the whole suite: an isolated home folder and the real data beside the repo."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO_ROOT / "sample_data"
SHARED_DATA = Path(os.environ.get("PATHREVIEW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own $PATHREVIEW_HOME, so no test sees another's registry or reviews.

    The folder is removed after the test: registered full architectures weigh up to 0.4 GB each.
    """
    home = tmp_path_factory.mktemp("pathreview_home")
    monkeypatch.setenv("PATHREVIEW_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public images beside the project; tests using them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder absent: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The small attributed images committed in sample_data/."""
    return SAMPLE_DATA


def _torch_threads() -> None:
    """Keep torch to the machine's two cores and deterministic where cheap."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


_torch_threads()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server, a stalled tunnel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]
