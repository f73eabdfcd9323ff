"""What a folder given to `pathreview predict-slides` stands for: its slide files and DICOM
WSI series, and what it holds that looks like a slide but is refused (never dropped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from slide_builders import tissue_image, write_aperio_svs, write_dicom_wsi

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.cohort import expand_slides
from napari_pathreview.io import open_slide
from napari_pathreview.io.slide_folders import expand_folders


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


def _series_into(folder: Path, prefix: str, image, study: str | None = None) -> list[Path]:
    """A DICOM WSI series written into ``folder`` as ``PREFIX_level_N.dcm`` (in ``study``)."""
    import pydicom

    files = []
    for file in write_dicom_wsi(folder / f".{prefix}", image, n_levels=2):
        if study is not None:  # slides of one case: one study, a series each
            dataset = pydicom.dcmread(file)
            dataset.StudyInstanceUID = study
            dataset.save_as(file)
        files.append(file.rename(folder / f"{prefix}_{file.name}"))
    (folder / f".{prefix}").rmdir()
    return files


def _mammogram(dicom_factory, name: str) -> Path:
    """A digital mammography DICOM (not a slide) at ``tmp_path / name``."""
    return dicom_factory(name, np.full((64, 48), 900, np.uint16))


def _svs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_aperio_svs(path, tissue_image(512, 512))


def test_a_folder_mixing_a_dicom_wsi_series_with_slide_files_gives_both(tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    write_dicom_wsi(folder, tissue_image(128, 128), n_levels=2)
    svs = _svs(folder / "a.svs")
    assert expand_slides([folder]) == [svs, folder / "level_0.dcm"]


def test_two_dicom_wsi_series_of_one_study_in_one_folder_are_two_slides(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    first = _series_into(folder, "a", tissue_image(128, 128), study="1.2.826.0.1.3680043.8.1")
    second = _series_into(folder, "b", tissue_image(192, 160), study="1.2.826.0.1.3680043.8.1")
    slides = expand_slides([folder])
    assert slides == [first[0], second[0]]
    with open_slide(slides[0]) as a, open_slide(slides[1]) as b:  # wsidicom opens each apart
        assert a.level_shapes == ((128, 128), (64, 64))
        assert b.level_shapes == ((192, 160), (96, 80))


def test_a_mammogram_dicom_beside_slides_is_refused_and_the_slides_kept(
    tmp_path: Path, dicom_factory
) -> None:
    folder = tmp_path / "cohort"
    svs = _svs(folder / "a.svs")
    mammogram = _mammogram(dicom_factory, f"{folder.name}/mammo.dcm")
    found = expand_folders([folder])
    assert found.slides == [svs]
    assert [r.path for r in found.refused] == [mammogram]
    assert "Digital Mammography" in found.refused[0].why
    assert "not a whole-slide image" in found.refused[0].why


def test_a_mammogram_dicom_does_not_swallow_a_dicom_wsi_folder(
    tmp_path: Path, dicom_factory
) -> None:
    folder = tmp_path / "case"
    write_dicom_wsi(folder, tissue_image(128, 128), n_levels=2)
    mammogram = _mammogram(dicom_factory, f"{folder.name}/mammo.dcm")
    found = expand_folders([folder])
    assert found.slides == [folder]
    assert [r.path for r in found.refused] == [mammogram]


def test_an_unreadable_dcm_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    svs = _svs(folder / "a.svs")
    (folder / "broken.dcm").write_bytes(b"\x00" * 64)
    found = expand_folders([folder])
    assert found.slides == [svs]
    assert [(r.path.name, r.why) for r in found.refused] == [
        ("broken.dcm", "not a readable DICOM file")
    ]


def test_a_dicom_series_of_labels_only_is_refused_not_a_slide(tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "case"
    files = write_dicom_wsi(folder, tissue_image(128, 128), n_levels=2)
    for file in files:
        dataset = pydicom.dcmread(file)
        dataset.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
        dataset.save_as(file)
    svs = _svs(folder / "a.svs")
    found = expand_folders([folder])
    assert found.slides == [svs]
    assert [r.path for r in found.refused] == [files[0]]
    assert "no pyramid (VOLUME) instance" in found.refused[0].why


def test_a_label_series_beside_the_pyramid_of_its_study_is_neither_a_slide_nor_refused(
    tmp_path: Path,
) -> None:
    import pydicom

    folder = tmp_path / "case"
    study = "1.2.826.0.1.3680043.8.2"
    _series_into(folder, "a", tissue_image(128, 128), study=study)
    labels = _series_into(folder, "label", tissue_image(64, 64), study=study)
    for file in labels:
        dataset = pydicom.dcmread(file)
        dataset.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
        dataset.save_as(file)
    found = expand_folders([folder])
    assert found.slides == [folder] and found.refused == []  # the folder is that one slide
    with open_slide(folder) as slide:  # it opens with its label
        assert slide.level_shapes == ((128, 128), (64, 64))
        assert "label" in slide.associated_images


def test_slide_files_in_a_sub_folder_are_reported_not_dropped(tmp_path: Path) -> None:
    svs = _svs(tmp_path / "cohort" / "a.svs")
    _svs(tmp_path / "cohort" / "batch2" / "b.svs")
    found = expand_folders([tmp_path / "cohort"])
    assert found.slides == [svs]
    assert [r.path for r in found.refused] == [tmp_path / "cohort" / "batch2"]
    assert "sub-folders are not searched" in found.refused[0].why


def test_a_folder_of_nothing_usable_is_refused_naming_what_it_holds(
    tmp_path: Path, dicom_factory
) -> None:
    _mammogram(dicom_factory, "films/mammo.dcm")
    with pytest.raises(InvalidInputError, match=r"no slides given.*mammo\.dcm.*Mammography"):
        expand_slides([tmp_path / "films"])
