"""The scripts in benchmarks/ still run against the current code, at their smallest sizes.

CI does not run the benchmarks, so an API change would otherwise rot them unseen. Each test
runs a script's ``main`` (or, where even ``--quick`` takes minutes on a 2-core CPU, the
functions its ``main`` composes) at toy sizes; the figures are not checked, the output is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_review_store_benchmark_prints_each_writer_against_bare_sqlite(capsys) -> None:
    load("review_store").main(["--quick", "--pg-url", ""])
    out = capsys.readouterr().out
    assert "sqlite3 bare insert (reference)" in out
    assert "ReviewStore.add_review, SQLite" in out
