"""Every real image in ../shared/data opens with the right layer type, shape and metadata.

Read-function level (the reader's own code path, no viewer) so 300+ files stay fast;
tests/io/test_viewer.py opens a few through a real viewer.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview._reader import napari_get_reader

_SHARED = Path(
    os.environ.get(
        "PATHREVIEW_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"
    )
)
_IMAGE_SUFFIXES = {".png", ".pgm", ".jpg", ".tif", ".tiff", ".dcm"}


def _files(folder: str) -> list[str]:
    root = _SHARED / folder
    if not root.is_dir():
        return ["(absent)"]
    return sorted(p.name for p in root.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def _rows(shared: Path, folder: str) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with open(shared / folder / "labels.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["file"], []).append(row)
    return rows


def _read(path: Path) -> list[tuple]:
    reader = napari_get_reader(str(path))
    assert reader is not None, f"reader refused {path.name}"
    layers = reader(str(path))
    assert layers[0][0] is not None, f"{path.name} did not open"
    return layers


@pytest.fixture(scope="module")
def breakhis_rows(shared_data: Path) -> dict[str, list[dict]]:
    return _rows(shared_data, "breakhis")


@pytest.mark.parametrize("name", _files("breakhis"))
def test_every_breakhis_image(shared_data: Path, breakhis_rows, name: str) -> None:
    ((data, kwargs, kind),) = _read(shared_data / "breakhis" / name)
    row = breakhis_rows[name][0]
    facts = kwargs["metadata"]["pathreview"]
    assert kind == "image" and kwargs["rgb"]
    assert data.shape == (460, 700, 3) and data.dtype == np.uint8
    assert facts["modality"] == "histology"
    assert (
        facts["binary_label"],
        facts["subtype"],
        str(facts["magnification"]),
        facts["patient_id"],
    ) == (row["binary_label"], row["subtype"], row["magnification"], row["patient_id"])


def _check_mias(layers: list[tuple], rows: list[dict], label_column: str | None) -> None:
    (data, kwargs, kind) = layers[0]
    facts = kwargs["metadata"]["pathreview"]
    assert kind == "image" and not kwargs["rgb"] and data.shape == (1024, 1024)
    assert data.dtype == np.uint8 and facts["modality"] == "mammogram"
    low, high = kwargs["contrast_limits"]
    assert 0 <= low < high <= 255
    assert facts["tissue"] == rows[0]["tissue"]
    assert facts["classes"] == [r["abnormality"] for r in rows]
    assert facts["severities"] == [r["severity"] or None for r in rows]
    if label_column:
        assert facts["label"] == rows[0][label_column]
    drawable = [r for r in rows if r["x"] and r["y"] and r["radius"]]
    assert len(layers) == (2 if drawable else 1)
    if drawable:
        shapes, shapes_kw, shapes_kind = layers[1]
        assert shapes_kind == "shapes" and len(shapes) == len(drawable)
        centres = sorted(tuple(s.mean(axis=0)) for s in shapes)
        assert centres == sorted((1024 - int(r["y"]), int(r["x"])) for r in drawable)


@pytest.mark.parametrize("name", _files("mias"))
def test_every_mias_mammogram(shared_data: Path, name: str) -> None:
    rows = _rows(shared_data, "mias")[name]
    _check_mias(_read(shared_data / "mias" / name), rows, None)


@pytest.fixture(scope="module")
def mias_full_rows(shared_data: Path) -> dict[str, list[dict]]:
    return _rows(shared_data, "mias_full")


@pytest.mark.parametrize("name", _files("mias_full"))
def test_every_mias_full_mammogram(shared_data: Path, mias_full_rows, name: str) -> None:
    layers = _read(shared_data / "mias_full" / name)
    _check_mias(layers, mias_full_rows[name], "image_label")
    assert (
        layers[0][1]["metadata"]["pathreview"]["patient_id"] == mias_full_rows[name][0]["patient"]
    )


@pytest.mark.parametrize("name", _files("he_reference"))
def test_every_he_reference_tile(shared_data: Path, name: str) -> None:
    from PIL import Image

    path = shared_data / "he_reference" / name
    ((data, kwargs, kind),) = _read(path)
    with Image.open(path) as image:
        width, height = image.size
    assert kind == "image" and kwargs["rgb"] and data.shape == (height, width, 3)
    assert data.dtype == np.uint8 and kwargs["metadata"]["pathreview"]["modality"] == "histology"
