"""A file that names no patient is a patient of its own: never merged with a same-named file."""

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from napari_pathreview.bilateral import pair_films
from napari_pathreview.training.datasets import from_csv, from_folder, split_group
from napari_pathreview.training.splits import make_splits


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 16, 3), value, np.uint8))


def _patients(samples) -> dict[str, str]:
    return {Path(s.path).parent.name + "/" + Path(s.path).name: s.patient_id for s in samples}


def test_same_named_files_in_two_class_folders_are_two_patients(tmp_path):
    _png(tmp_path / "normal" / "001.png", 60)
    _png(tmp_path / "benign" / "001.png", 190)
    assert _patients(from_folder(tmp_path)) == {
        "benign/001.png": "benign/001",
        "normal/001.png": "normal/001",
    }


def test_same_named_manifest_rows_without_patient_id_are_two_patients(tmp_path):
    _png(tmp_path / "normal" / "001.png", 60)
    _png(tmp_path / "benign" / "001.png", 190)
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["path", "label"], ["normal/001.png", "normal"], ["benign/001.png", "benign"]]
        )
    assert [s.patient_id for s in from_csv(manifest)] == ["normal/001", "benign/001"]


def test_breakhis_and_mias_names_in_a_folder_tree_still_name_their_patient(shared_data, tmp_path):
    (tmp_path / "benign").mkdir()
    (tmp_path / "normal").mkdir()
    for name in ("SOB_B_A-14-22549AB-40-001.png", "SOB_B_A-14-22549AB-100-027.png"):
        shutil.copy(shared_data / "breakhis" / name, tmp_path / "benign" / name)
    for name in ("mdb001.png", "mdb002.png"):
        shutil.copy(shared_data / "mias_full" / name, tmp_path / "normal" / name)
    assert _patients(from_folder(tmp_path)) == {
        "benign/SOB_B_A-14-22549AB-100-027.png": "14-22549AB",
        "benign/SOB_B_A-14-22549AB-40-001.png": "14-22549AB",
        "normal/mdb001.png": "1",
        "normal/mdb002.png": "1",
    }


def test_a_patient_split_may_part_same_named_files_of_two_classes(tmp_path):
    for i in range(8):
        _png(tmp_path / "normal" / f"{i:03d}.png", 60)
        _png(tmp_path / "benign" / f"{i:03d}.png", 190)
    samples = from_folder(tmp_path)
    groups = [split_group(s, "patient") for s in samples]
    labels = [int(s.label == "benign") for s in samples]
    fold = make_splits(labels, groups, "patient_holdout", 0.25, 0.25, seed=0).folds[0]
    part = {samples[i].path: name for name in ("train", "val", "test") for i in getattr(fold, name)}
    assert len(set(groups)) == 16
    assert any(
        part[str(tmp_path / "normal" / f"{i:03d}.png")]
        != part[str(tmp_path / "benign" / f"{i:03d}.png")]
        for i in range(8)
    )


def test_files_named_only_by_their_path_are_never_read_as_two_films(shared_data, tmp_path):
    _png(tmp_path / "normal" / "001.png", 60)
    _png(tmp_path / "benign" / "001.png", 190)
    for name in ("mdb001.png", "mdb002.png"):
        shutil.copy(shared_data / "mias_full" / name, tmp_path / "normal" / name)
    samples = from_folder(tmp_path)
    partners, alone = pair_films([s.patient_id for s in samples])
    names = [Path(s.path).name for s in samples]
    paired = {names[i]: names[j] for i, j in partners.items()}
    assert paired == {"mdb001.png": "mdb002.png", "mdb002.png": "mdb001.png"}
    assert {names[i] for i in alone} == {"001.png"}
