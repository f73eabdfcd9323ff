"""A slide's files and their state: what a cohort's resume key looks at."""

from __future__ import annotations

import time
from pathlib import Path

from slide_builders import tissue_image, write_dicom_wsi

from napari_pathreview.io.dicom_slide import series_files
from napari_pathreview.io.slide_files import slide_files, slide_state


def _rewrite_in_place(file: Path) -> None:
    """Change the last byte, keeping the size (a re-export of the same dimensions), at a later
    time than the file's: written again until the file system's clock (coarse, a few ms on
    some) has moved on."""
    before = file.stat().st_mtime_ns
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    while file.stat().st_mtime_ns == before:
        time.sleep(0.005)
        file.write_bytes(bytes(data))


def test_a_dicom_wsi_folder_changes_state_when_any_instance_is_rewritten(tmp_path) -> None:
    files = write_dicom_wsi(tmp_path / "case", tissue_image(256, 192), n_levels=3)
    before = slide_state(tmp_path / "case")
    assert slide_state(tmp_path / "case") == before  # untouched: the same
    _rewrite_in_place(files[-1])  # the smallest level, not the file a folder is named by
    assert slide_state(tmp_path / "case") != before


def test_a_dicom_instance_standing_for_its_series_covers_the_other_instances(tmp_path) -> None:
    files = write_dicom_wsi(tmp_path / "case", tissue_image(256, 192), n_levels=3)
    volume = files[0]
    assert set(series_files(volume)) <= set(slide_files(volume))
    before = slide_state(volume)
    _rewrite_in_place(files[-1])
    assert slide_state(volume) != before


def test_an_mrxs_state_covers_its_data_folder(tmp_path) -> None:
    index = tmp_path / "case.mrxs"
    index.write_text("[GENERAL]\n")
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "Slidedat.ini").write_text("[GENERAL]\nSLIDE_VERSION=01.02\n")
    data = tmp_path / "case" / "Data0000.dat"
    data.write_bytes(bytes(4096))
    assert slide_files(index) == [index, data, tmp_path / "case" / "Slidedat.ini"]
    before = slide_state(index)
    _rewrite_in_place(data)
    assert slide_state(index) != before


def test_a_vms_state_covers_the_images_it_names(tmp_path) -> None:
    index = tmp_path / "case.vms"
    index.write_text(
        "[Virtual Microscope Specimen]\nNoLayers=1\nImageFile=case.jpg\n"
        "ImageFile(1,0)=case_x1.jpg\nMapFile=case_map.jpg\n"
    )
    for name in ("case.jpg", "case_x1.jpg", "case_map.jpg"):
        (tmp_path / name).write_bytes(bytes(100))
    assert [f.name for f in slide_files(index)] == [
        "case.vms", "case.jpg", "case_map.jpg", "case_x1.jpg"
    ]  # fmt: skip
    before = slide_state(index)
    _rewrite_in_place(tmp_path / "case_x1.jpg")
    assert slide_state(index) != before


def test_a_single_file_slide_is_itself_whatever_lies_beside_it(tmp_path) -> None:
    slide = tmp_path / "a.svs"
    slide.write_bytes(bytes(100))
    before = slide_state(slide)
    (tmp_path / "notes.txt").write_text("scanned twice")
    assert slide_files(slide) == [slide] and slide_state(slide) == before
    _rewrite_in_place(slide)
    assert slide_state(slide) != before
