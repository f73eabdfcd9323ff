"""``preflight.probe_modality`` tells an image's modality from its file as the reader will.

The CLI and the training recipes refuse a model of the other modality with it before torch
loads, so it must agree with ``load_image`` (the reader's one rule) on every kind of file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pathreview.io import load_image
from napari_pathreview.preflight import probe_modality


def _film(shared_data: Path, refnum: str = "mdb028") -> np.ndarray:
    """A real MIAS film (8-bit grey, 1024²) as 12-bit values, as a digital unit stores it."""
    grey = np.asarray(Image.open(shared_data / "mias" / f"{refnum}.pgm"))
    return grey.astype(np.uint16) * 16


def test_a_tiff_stack_of_grey_film_frames_is_a_mammogram(shared_data, tmp_path) -> None:
    frames = np.stack([_film(shared_data, r) for r in ("mdb028", "mdb033", "mdb041")])
    path = tmp_path / "films.tif"
    tifffile.imwrite(path, frames, photometric="minisblack")
    assert len(tifffile.TiffFile(path).pages) == 3
    assert probe_modality(path) == "mammogram" == load_image(path, frame="all").modality


def test_a_film_tiff_with_a_thumbnail_page_is_a_mammogram(shared_data, tmp_path) -> None:
    film = _film(shared_data)
    thumbnail = np.repeat((film[::8, ::8] // 16).astype(np.uint8)[..., None], 3, axis=2)
    path = tmp_path / "film_with_thumbnail.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(film)
        tif.write(thumbnail, photometric="rgb")
    assert probe_modality(path) == "mammogram" == load_image(path).modality


def test_a_pyramidal_h_and_e_slide_stays_histology() -> None:
    from napari_pathreview._sample_data import sample_path

    path = sample_path("pyramidal_tiff")
    assert len(tifffile.TiffFile(path).series[0].levels) > 1
    assert probe_modality(path) == "histology" == load_image(path).modality


def test_a_film_saved_as_an_rgb_png_is_a_mammogram(shared_data, tmp_path) -> None:
    grey = np.asarray(Image.open(shared_data / "mias" / "mdb028.pgm"))
    path = tmp_path / "film.png"
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path)
    assert probe_modality(path) == "mammogram" == load_image(path).modality


@pytest.mark.parametrize("name", ["SOB_B_A-14-22549AB-40-001.png", "SOB_M_DC-14-2523-40-010.png"])
def test_an_h_and_e_png_stays_histology(shared_data, tmp_path, name) -> None:
    path = tmp_path / "tile.png"  # a name that says nothing: the pixels decide
    path.write_bytes((shared_data / "breakhis" / name).read_bytes())
    assert probe_modality(path) == "histology" == load_image(path).modality


def test_a_colour_multi_frame_dicom_is_histology(colour_dicom_factory) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 48, 3), dtype=np.uint8)
    path = colour_dicom_factory("photos.dcm", frames)
    assert probe_modality(path) == "histology" == load_image(path, frame="all").modality


def test_probe_image_reads_a_dicom_stack_s_modality_and_frames_from_one_header_read(
    dicom_factory, monkeypatch
) -> None:
    """``predict --frame`` counts frames and checks modality from this one probe per file."""
    import pydicom

    from napari_pathreview.preflight import ImageProbe, probe_image

    path = dicom_factory("dbt.dcm", np.zeros((3, 16, 16), dtype=np.uint16))
    reads = []
    real_read = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    assert probe_image(path) == ImageProbe("mammogram", 3)
    assert len(reads) == 1
    assert load_image(path, frame="all").frames == 3


def test_probe_image_counts_a_tiff_stack_s_frames_as_the_reader_finds_them(tmp_path) -> None:
    from napari_pathreview.preflight import ImageProbe, probe_image

    path = tmp_path / "films.tif"
    tifffile.imwrite(path, np.zeros((4, 16, 16), dtype=np.uint16), photometric="minisblack")
    assert probe_image(path) == ImageProbe("mammogram", 4)
    assert load_image(path, frame="all").frames == 4


def test_a_dicom_named_as_a_png_is_probed_as_the_reader_reads_it(dicom_factory) -> None:
    from napari_pathreview.preflight import ImageProbe, probe_image

    path = dicom_factory("dbt.dcm", np.zeros((2, 16, 16), dtype=np.uint16))
    renamed = path.rename(path.with_suffix(".png"))
    assert probe_image(renamed) == ImageProbe("mammogram", 2)
    assert load_image(renamed, frame="all").frames == 2
