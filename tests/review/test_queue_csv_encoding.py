"""``pathreview review queue LIST.csv``: a CSV as spreadsheet programs save it is read, and
one in another encoding is refused naming it (the console script, run in a subprocess)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

CLI = [sys.executable, "-m", "napari_pathreview.cli"]


def _run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    argv = [*CLI, *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture
def film_model() -> str:
    """A small registered mammogram classifier (ordering needs no training)."""
    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    card = {"name": "queue-model", "task": "binary", "classes": ["benign", "malignant"],
            "modality": "mammogram", "input_size": [3, 32, 32]}  # fmt: skip
    return f"queue-model@{ModelRegistry().register(create_model('test_resnet', 2), card)}"


@pytest.fixture
def films(tmp_path) -> list[str]:
    rng = np.random.default_rng(0)
    names = ["film a.png", "film b.png"]
    for name in names:
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    return names


def test_a_queue_csv_saved_with_a_byte_order_mark_is_read(tmp_path, films, film_model) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: its 'path' column used to be reported missing."""
    listing = tmp_path / "queue in.csv"
    listing.write_text("path\n" + "\n".join(films) + "\n", encoding="utf-8-sig")
    result = _run("review", "queue", listing, "--model", film_model, "--device", "cpu",
                  "--out", "queue.csv", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (tmp_path / "queue.csv").open(newline="") as handle:
        queued = {Path(row["path"]).name for row in csv.DictReader(handle)}
    assert queued == set(films)


def test_a_queue_csv_not_in_utf8_is_refused_naming_it(tmp_path, films) -> None:
    """A Latin-1 CSV (a path with 'é') used to end the command in a UnicodeDecodeError
    traceback; the model is never looked at."""
    listing = tmp_path / "liste.csv"
    listing.write_bytes("path\nfilm é.png\n".encode("latin-1"))
    result = _run("review", "queue", listing, "--model", "nosuch", "--out", "q.csv", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"queue CSV {listing} is not UTF-8 text" in result.stderr
    assert not (tmp_path / "q.csv").exists()
