"""What a folder given to `pathreview predict-slides` stands for: its slides, or one DICOM slide."""

from __future__ import annotations

from pathlib import Path

from slide_builders import tissue_image, write_dicom_wsi

from napari_pathreview.inference.cohort import expand_slides


def _suffixless(files: list[Path]) -> None:
    for file in files:  # DICOM exports often name instances without a suffix
        file.rename(file.with_suffix(""))


def test_a_folder_of_dicom_wsi_folders_is_one_slide_per_folder(tmp_path: Path) -> None:
    write_dicom_wsi(tmp_path / "cohort" / "case1", tissue_image(128, 128), n_levels=2)
    write_dicom_wsi(tmp_path / "cohort" / "case2", tissue_image(128, 128), n_levels=2)
    (tmp_path / "cohort" / "notes").mkdir()
    assert expand_slides([tmp_path / "cohort"]) == [
        tmp_path / "cohort" / "case1",
        tmp_path / "cohort" / "case2",
    ]


def test_a_dicom_wsi_folder_of_suffixless_instances_is_one_slide(tmp_path: Path) -> None:
    _suffixless(write_dicom_wsi(tmp_path / "case", tissue_image(128, 128), n_levels=2))
    assert expand_slides([tmp_path / "case"]) == [tmp_path / "case"]
