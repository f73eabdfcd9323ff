"""sample_data/: small, attributed, and the demo sets balanced as the contract says."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from napari_pathreview._sample_data import SAMPLE_DIR, SAMPLES
from napari_pathreview.io import load_image, parse_breakhis_name


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_package_reaches_sample_data_through_the_symlink(sample_data: Path) -> None:
    assert SAMPLE_DIR.resolve() == sample_data.resolve()
    assert all((SAMPLE_DIR / relative).is_file() for relative in SAMPLES.values())


def test_sample_data_stays_under_ten_megabytes(sample_data: Path) -> None:
    total = sum(p.stat().st_size for p in sample_data.rglob("*") if p.is_file())
    assert total < 10 * 2**20, f"sample_data/ is {total / 2**20:.1f} MiB"


def test_every_image_is_attributed(sample_data: Path) -> None:
    attribution = (sample_data / "ATTRIBUTION.md").read_text()
    for path in sample_data.rglob("*"):
        if path.suffix.lower() in {".png", ".pgm", ".jpg", ".tif"}:
            stem = path.stem
            assert stem in attribution, f"{path.relative_to(sample_data)} is not in ATTRIBUTION.md"
    for citation in (
        "10.1109/TBME.2015.2496264",
        "10.17863/CAM.105113",
        "10.1109/ISBI.2009.5193250",
    ):
        assert citation in attribution


def test_histology_demo_set_is_balanced_and_labelled_by_name(sample_data: Path) -> None:
    folder = sample_data / "demo" / "histology"
    rows = _rows(folder / "labels.csv")
    assert {"path", "label", "patient_id", "subtype", "magnification"} <= set(rows[0])
    labels = [r["label"] for r in rows]
    assert labels.count("benign") == labels.count("malignant") >= 10
    for row in rows:
        info = parse_breakhis_name(row["path"])
        assert (info.binary_label, info.patient_id, info.subtype) == (
            row["label"],
            row["patient_id"],
            row["subtype"],
        )
        assert load_image(folder / row["path"]).data.shape == (230, 350, 3)
    assert len({r["patient_id"] for r in rows}) >= 12


def test_mammogram_demo_set_is_balanced_one_image_per_woman(sample_data: Path) -> None:
    folder = sample_data / "demo" / "mammogram"
    rows = _rows(folder / "labels.csv")
    labels = [r["label"] for r in rows]
    assert {labels.count(c) for c in ("normal", "benign", "malignant")} == {10}
    assert len({r["patient_id"] for r in rows}) == len(rows)
    for row in rows:
        loaded = load_image(folder / row["path"])
        assert loaded.modality == "mammogram" and loaded.data.shape == (256, 256)
        assert bool(row["roi_row"]) == (row["label"] != "normal") or row["abnormality"] == "CALC"


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_sample_functions_return_layer_data(key: str) -> None:
    import napari_pathreview._sample_data as samples

    layers = getattr(samples, key)()
    assert layers[0][2] == "image" and layers[0][1]["metadata"]["pathreview"]["source_path"]
