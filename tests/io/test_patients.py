"""Whose image a file is, from what the file itself says."""

from __future__ import annotations

import numpy as np

from napari_pathreview.io.patients import patient_of_file


def test_a_mias_woman_owns_two_consecutive_films():
    assert [patient_of_file(f"mdb{n:03d}.pgm") for n in (1, 2, 3, 322)] == ["1", "1", "2", "161"]


def test_a_breakhis_name_carries_its_patient():
    assert patient_of_file("SOB_B_A-14-22549AB-40-001.png") == "14-22549AB"


def test_a_dicom_film_names_its_patient_in_the_header(dicom_factory):
    path = dicom_factory("film.dcm", np.zeros((8, 8), np.uint16))
    assert patient_of_file(path) == "TEST-001"


def test_a_dicom_film_without_a_suffix_names_its_patient_and_side(dicom_factory):
    from napari_pathreview.io.patients import FilmSide, film_side

    path = dicom_factory("IM0001", np.zeros((8, 8), np.uint16), laterality="L", view="CC")
    assert patient_of_file(path) == "TEST-001"
    assert film_side(path) == FilmSide("L", "CC")


def test_a_file_that_says_nothing_names_no_patient(tmp_path):
    (tmp_path / "broken.dcm").write_bytes(b"not a dicom")
    assert patient_of_file(tmp_path / "scan.png") is None
    assert patient_of_file(tmp_path / "broken.dcm") is None
