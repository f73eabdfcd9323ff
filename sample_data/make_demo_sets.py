"""Build the small demo training sets in sample_data/demo/ from ../shared/data.

Usage (from the repository root):
    .venv/bin/python sample_data/make_demo_sets.py [--data ../shared/data] [--out sample_data/demo]

- ``demo/histology``: 24 BreaKHis patches (12 benign, 12 malignant), spread round-robin over
  patients and subtypes, resized 700×460 → 350×230 and saved as JPEG quality 90 under their
  original BreaKHis names (so the label stays readable from the name).
- ``demo/mammogram``: 30 mini-MIAS mammograms (10 normal, 10 benign, 10 malignant), at most
  one image per woman, area-downscaled 1024×1024 → 256×256 lossless PNG.

Each folder gets ``labels.csv`` (path relative to the CSV, label, patient_id, plus optional
columns). The selection is deterministic: rerunning the script reproduces the same files.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
HISTOLOGY_PER_CLASS = 12
MAMMOGRAMS_PER_CLASS = 10
HISTOLOGY_SIZE = (350, 230)  # width, height: half of BreaKHis' 700×460
MAMMOGRAM_SIZE = 256


def _round_robin(groups: dict[str, list[dict]], count: int, presorted: bool = False) -> list[dict]:
    """Take one item per group in turn until ``count`` are taken.

    Groups are visited in sorted order; items in file order unless ``presorted``.
    """
    queues = {
        key: list(items) if presorted else sorted(items, key=lambda r: r["file"])
        for key, items in sorted(groups.items())
    }
    chosen: list[dict] = []
    while len(chosen) < count and any(queues.values()):
        for key in list(queues):
            if queues[key] and len(chosen) < count:
                chosen.append(queues[key].pop(0))
    return chosen


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_histology(data: Path, out: Path) -> list[dict]:
    """Select, resize and write the BreaKHis demo patches; returns the CSV rows."""
    with open(data / "breakhis" / "labels.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for label in ("benign", "malignant"):
        nested: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            if row["binary_label"] == label:
                nested[row["subtype"]][row["patient_id"]].append(row)
        # round-robin over subtypes, and within a subtype over its patients
        by_subtype = {
            subtype: _round_robin(patients, len(rows)) for subtype, patients in nested.items()
        }
        for row in _round_robin(by_subtype, HISTOLOGY_PER_CLASS, presorted=True):
            name = Path(row["file"]).with_suffix(".jpg").name
            with Image.open(data / "breakhis" / row["file"]) as image:
                small = image.convert("RGB").resize(HISTOLOGY_SIZE, Image.Resampling.LANCZOS)
            small.save(out / name, quality=90)
            table.append(
                {
                    "path": name,
                    "label": label,
                    "patient_id": row["patient_id"],
                    "subtype": row["subtype"],
                    "magnification": row["magnification"],
                }
            )
    _write_csv(out / "labels.csv", table)
    return table


def make_mammograms(data: Path, out: Path) -> list[dict]:
    """Select, downscale and write the MIAS demo mammograms; returns the CSV rows."""
    import cv2

    with open(data / "mias_full" / "labels.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    first_row: dict[str, dict] = {}
    for row in rows:  # one row per abnormality: keep the image's first (largest-listed) one
        first_row.setdefault(row["file"], row)
    out.mkdir(parents=True, exist_ok=True)
    used_women: set[str] = set()
    table = []
    factor = MAMMOGRAM_SIZE / 1024
    for label in ("malignant", "benign", "normal"):  # rarest first, so they get their women
        by_tissue: dict[str, list[dict]] = defaultdict(list)
        for row in first_row.values():
            if row["image_label"] == label and row["patient"] not in used_women:
                by_tissue[row["tissue"]].append(row)
        for tissue in by_tissue:  # one image per woman within a class
            seen: set[str] = set()
            by_tissue[tissue] = [
                r
                for r in sorted(by_tissue[tissue], key=lambda r: r["file"])
                if not (r["patient"] in seen or seen.add(r["patient"]))
            ]
        for row in _round_robin(by_tissue, MAMMOGRAMS_PER_CLASS):
            used_women.add(row["patient"])
            with Image.open(data / "mias_full" / row["file"]) as image:
                pixels = np.asarray(image.convert("L"))
            small = cv2.resize(
                pixels, (MAMMOGRAM_SIZE, MAMMOGRAM_SIZE), interpolation=cv2.INTER_AREA
            )
            Image.fromarray(small).save(out / row["file"], optimize=True)
            has_roi = bool(row["x"] and row["y"] and row["radius"])
            table.append(
                {
                    "path": row["file"],
                    "label": label,
                    "patient_id": row["patient"],
                    "tissue": row["tissue"],
                    "abnormality": row["abnormality"],
                    "severity": row["severity"],
                    "roi_row": round((1024 - int(row["y"])) * factor, 1) if has_roi else "",
                    "roi_col": round(int(row["x"]) * factor, 1) if has_roi else "",
                    "roi_radius": round(int(row["radius"]) * factor, 1) if has_roi else "",
                }
            )
    table.sort(key=lambda r: r["path"])
    _write_csv(out / "labels.csv", table)
    return table


def main() -> None:
    """Parse arguments and build both demo sets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "demo")
    args = parser.parse_args()
    histology = make_histology(args.data, args.out / "histology")
    mammograms = make_mammograms(args.data, args.out / "mammogram")
    print(f"histology: {len(histology)} images, mammogram: {len(mammograms)} images in {args.out}")


if __name__ == "__main__":
    main()
