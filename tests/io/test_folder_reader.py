"""Opening a folder of DICOM files in napari (File ▸ Open Folder): one layer per film and per
whole-slide series, named by series, laterality and view; what cannot be read is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from slide_builders import tissue_image, write_dicom_wsi

from napari_pathreview._reader import napari_get_reader

VIEWS = [
    ("R", "CC", "mdb028"),
    ("L", "CC", "mdb033"),
    ("R", "MLO", "mdb041"),
    ("L", "MLO", "mdb058"),
]


@pytest.fixture
def notifications():
    """Notifications napari records while the test runs."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    yield lambda: [str(n.message) for n in notification_manager.records[start:]]


def _grey(shared_data: Path, refnum: str, step: int = 4) -> np.ndarray:
    """A real MIAS film, subsampled, at 12 bits."""
    grey = np.asarray(Image.open(shared_data / "mias" / f"{refnum}.pgm"))[::step, ::step]
    return grey.astype(np.uint16) * 16


def _films(dicom_factory, folder: str, shared_data: Path) -> list[Path]:
    """A four-view study as a PACS exports it: suffixless files named by instance, real MIAS
    pixels at 0.8 mm per pixel (a quarter of their 0.2 mm)."""
    return [
        dicom_factory(
            f"{folder}/IM{index:04d}",
            _grey(shared_data, refnum),
            laterality=laterality,
            view=view,
            spacing=(0.8, 0.8),
        )  # fmt: skip
        for index, (laterality, view, refnum) in enumerate(VIEWS)
    ]


def _read(folder: Path) -> list[tuple]:
    reader = napari_get_reader(str(folder))
    assert reader is not None, "the reader declined the folder"
    return reader(str(folder))


def test_a_folder_of_films_opens_one_layer_per_film_named_by_laterality_and_view(
    shared_data, tmp_path, dicom_factory
) -> None:
    _films(dicom_factory, "study", shared_data)
    layers = _read(tmp_path / "study")
    assert sorted(kwargs["name"] for _, kwargs, _ in layers) == ["L CC", "L MLO", "R CC", "R MLO"]
    for data, kwargs, kind in layers:
        assert kind == "image" and data.shape == (256, 256)
        assert kwargs["scale"] == (0.8, 0.8) and kwargs["units"] == ("mm", "mm")
        assert kwargs["metadata"]["pathreview"]["modality"] == "mammogram"


def test_a_folder_of_two_slide_series_opens_each_as_its_pyramid(tmp_path) -> None:
    folder = tmp_path / "case"
    write_dicom_wsi(folder, tissue_image(256, 192, seed=1), n_levels=3)
    for index, file in enumerate(
        write_dicom_wsi(tmp_path / "b", tissue_image(128, 160), n_levels=2)
    ):
        file.rename(folder / f"second_{index}.dcm")
    layers = _read(folder)
    assert [len(data) for data, _, _ in layers] == [3, 2]
    assert [data[0].shape for data, _, _ in layers] == [(256, 192, 3), (128, 160, 3)]
    assert all(kwargs["multiscale"] and kwargs["rgb"] for _, kwargs, _ in layers)
    assert len({kwargs["name"] for _, kwargs, _ in layers}) == 2


def test_a_label_only_series_of_another_study_is_a_problem_and_the_slide_opens(tmp_path) -> None:
    import pydicom

    from napari_pathreview.io.folders import folder_contents

    folder = tmp_path / "case"
    slide = write_dicom_wsi(folder, tissue_image(128, 128), n_levels=2)
    labels = write_dicom_wsi(tmp_path / "other", tissue_image(64, 64), n_levels=2)
    for index, file in enumerate(labels):  # another study's label, with no slide beside it
        dataset = pydicom.dcmread(file)
        dataset.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
        dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.3"
        dataset.save_as(folder / f"label_{index}.dcm")
    found = folder_contents(folder)
    assert [item.path for item in found.items] == [slide[0]]
    assert [path.name for path, _ in found.problems] == ["label_0.dcm"]
    assert "holds only labels or overviews" in found.problems[0][1]


def test_a_folder_mixing_films_and_a_slide_series_opens_them_all(
    shared_data, tmp_path, dicom_factory
) -> None:
    _films(dicom_factory, "case", shared_data)
    write_dicom_wsi(tmp_path / "case", tissue_image(256, 192), n_levels=2)
    layers = _read(tmp_path / "case")
    assert [kwargs["name"] for _, kwargs, _ in layers] == [
        "case", "R CC", "L CC", "R MLO", "L MLO"
    ]  # fmt: skip
    assert layers[0][1]["metadata"]["pathreview"]["modality"] == "histology"


def test_unreadable_files_are_named_in_a_notice_and_the_rest_open(
    shared_data, tmp_path, notifications, dicom_factory
) -> None:
    films = _films(dicom_factory, "study", shared_data)
    (tmp_path / "study" / "broken.dcm").write_bytes(b"not a dicom file at all")
    cut = films[3].read_bytes()
    films[3].write_bytes(cut[: len(cut) // 2])  # pixel data cut short, as by a failed copy
    layers = _read(tmp_path / "study")
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["R CC", "L CC", "R MLO"]
    messages = notifications()
    assert any("broken.dcm" in m for m in messages), messages
    assert any(films[3].name in m for m in messages), messages


def test_repeated_views_are_told_apart_by_file_name(shared_data, tmp_path, dicom_factory) -> None:
    for name in ("A", "B"):
        dicom_factory(f"two_women/{name}.dcm", _grey(shared_data, "mdb028", 8), view="CC")
    names = [kwargs["name"] for _, kwargs, _ in _read(tmp_path / "two_women")]
    assert names == ["R CC (A.dcm)", "R CC (B.dcm)"]


def _cd(films: list[Path], root: Path) -> None:
    """The films as a hospital CD holds them: a DICOMDIR and PT000000/ST000000/SE00000N/IM000000
    (written by pydicom's FileSet, one series per film)."""
    import pydicom
    from pydicom.fileset import FileSet
    from pydicom.uid import generate_uid

    study, cd = generate_uid(), FileSet()
    for number, film in enumerate(films, start=1):
        ds = pydicom.dcmread(film)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "1200", "1", ""
        ds.PatientName, ds.SeriesNumber, ds.InstanceNumber = "Test^Film", number, 1
        cd.add(ds)
    cd.write(root)


def test_a_hospital_cd_opens_the_films_its_dicomdir_lists(
    shared_data, tmp_path, dicom_factory
) -> None:
    _cd(_films(dicom_factory, "films", shared_data), tmp_path / "cd")
    assert (tmp_path / "cd" / "DICOMDIR").is_file()
    layers = _read(tmp_path / "cd")
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["R CC", "L CC", "R MLO", "L MLO"]
    assert all(kwargs["scale"] == (0.8, 0.8) for _, kwargs, _ in layers)


def test_a_folder_without_dicom_is_left_to_other_readers(shared_data, tmp_path) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    source = shared_data / "breakhis" / "SOB_M_DC-14-2523-40-010.png"
    (folder / source.name).write_bytes(source.read_bytes())
    assert napari_get_reader(str(folder)) is None


@pytest.mark.viewer
def test_a_folder_of_films_opens_from_the_viewer(
    make_napari_viewer, shared_data, tmp_path, dicom_factory
) -> None:
    _films(dicom_factory, "study", shared_data)
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-pathreview")
    assert [layer.name for layer in layers] == ["R CC", "L CC", "R MLO", "L MLO"]
    assert all([str(u) for u in layer.units] == ["millimeter"] * 2 for layer in layers)
