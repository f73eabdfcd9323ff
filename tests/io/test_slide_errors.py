"""Broken slides give a clear ImageReadError naming the file, and the reader opens no layer."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from slide_builders import halvings, tissue_image, write_dicom_wsi

from napari_pathreview._reader import napari_get_reader, read_paths
from napari_pathreview.errors import ImageReadError
from napari_pathreview.io import load_image, open_slide


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return tissue_image(512, 384)


def _pyramid(path: Path, levels: list[np.ndarray], tile: int = 128) -> Path:
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            levels[0], tile=(tile, tile), subifds=len(levels) - 1, metadata=None, compression="zlib"
        )
        for level in levels[1:]:
            tif.write(level, tile=(tile, tile), subfiletype=1, metadata=None, compression="zlib")
    return path


def test_mrxs_without_its_data_folder(tmp_path: Path) -> None:
    path = tmp_path / "case 7.mrxs"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    with pytest.raises(ImageReadError, match=r"case 7\.mrxs.*data folder case 7/"):
        load_image(path)


def test_mrxs_with_an_empty_folder_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "slide.mrxs"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    (tmp_path / "slide").mkdir()
    with pytest.raises(ImageReadError, match=r"slide\.mrxs"):
        open_slide(path)


def test_dicom_series_missing_its_full_resolution_level(tmp_path: Path, image) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image)
    files[0].unlink()
    with pytest.raises(ImageReadError, match=r"level_1\.dcm.*full-resolution level.*missing"):
        load_image(files[1])


def test_unsupported_transfer_syntax(tmp_path: Path, image) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image, syntax="rle", n_levels=2)
    with pytest.raises(ImageReadError, match=r"level_0\.dcm.*unsupported DICOM transfer syntax"):
        load_image(files[1])


def test_folder_with_two_dicom_series_is_ambiguous(tmp_path: Path, image) -> None:
    write_dicom_wsi(tmp_path / "wsi", image, n_levels=1)
    second = write_dicom_wsi(tmp_path / "other", image, n_levels=1)
    second[0].rename(tmp_path / "wsi" / "second.dcm")
    with pytest.raises(ImageReadError, match="2 series"):
        open_slide(tmp_path / "wsi")


def test_truncated_tile_is_reported_at_open(tmp_path: Path, image) -> None:
    path = _pyramid(tmp_path / "cut.tif", halvings(image, 3))
    with tifffile.TiffFile(path) as tif:
        first_tile_end = int(tif.pages[0].dataoffsets[0] + tif.pages[0].databytecounts[0])
    with open(path, "r+b") as handle:
        handle.truncate(first_tile_end + 10)  # level-0 tiles beyond the first are cut off
    with pytest.raises(ImageReadError, match=r"cut\.tif.*truncated"):
        load_image(path)


def test_a_cut_short_slide_is_one_error_not_tifffile_log_lines(tmp_path: Path, caplog) -> None:
    """The sample pyramid cut inside its tiles: tifffile used to log six ERROR/WARNING lines
    of its internals before the one ImageReadError that says what is wrong."""
    from napari_pathreview._sample_data import sample_path

    whole = sample_path("pyramidal_tiff").read_bytes()
    path = tmp_path / "cut_slide.tif"
    path.write_bytes(whole[: len(whole) * 6 // 10])
    with caplog.at_level(logging.DEBUG), pytest.raises(ImageReadError, match="cut_slide.tif"):
        load_image(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "tifffile: " in caplog.text  # still there at debug level for whoever looks


def test_tile_table_not_covering_the_declared_size(tmp_path: Path, image) -> None:
    path = _pyramid(tmp_path / "short.tif", halvings(image, 2))
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["ImageLength"]
        offset, dtype = tag.valueoffset, tag.dtype
    with open(path, "r+b") as handle:  # declare twice the rows the tiles hold
        handle.seek(offset)
        handle.write(np.array([1024], dtype="<u2" if dtype == 3 else "<u4").tobytes())
    with pytest.raises(ImageReadError, match=r"short\.tif.*tile table"):
        load_image(path)


def test_levels_that_disagree_in_aspect_ratio(tmp_path: Path, image) -> None:
    squashed = image[::2, ::4]  # level 1 halves the rows but quarters the columns
    path = _pyramid(tmp_path / "odd.tif", [image, np.ascontiguousarray(squashed)])
    with pytest.raises(ImageReadError, match=r"odd\.tif.*aspect ratio"):
        load_image(path)


def test_reader_opens_no_layer_for_a_broken_slide(tmp_path: Path, image) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image, syntax="rle", n_levels=1)
    reader = napari_get_reader(str(files[0]))
    assert reader is not None
    assert reader(str(files[0])) == [(None,)]


def test_get_reader_takes_dicom_folders_only(tmp_path: Path, image) -> None:
    write_dicom_wsi(tmp_path / "wsi", image, n_levels=1)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("not an image")
    assert napari_get_reader(str(tmp_path / "wsi")) is not None
    assert napari_get_reader(str(tmp_path / "photos")) is None
    assert napari_get_reader(str(tmp_path / "absent")) is None


def test_unknown_pixel_size_is_announced_once(tmp_path: Path, image) -> None:
    from napari.utils.notifications import notification_manager

    path = _pyramid(tmp_path / "nompp.tif", halvings(image, 3))
    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda event: seen.append(event.message))
    try:
        [(_, kwargs, _)] = read_paths(str(path))
    finally:
        notification_manager.notification_ready.disconnect()
    assert kwargs["scale"] == (1.0, 1.0) and "units" not in kwargs
    assert len([m for m in seen if "pixel size" in m]) == 1


@pytest.mark.parametrize("syntax", ["jpeg", "uncompressed"])
def test_dicom_instance_cut_short_is_reported_at_open(tmp_path: Path, image, syntax: str) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image, syntax=syntax)
    size = files[0].stat().st_size
    with open(files[0], "r+b") as handle:
        handle.truncate(size - 3000)  # the last frames of level 0 are lost
    with pytest.raises(ImageReadError, match=r"level_0\.dcm.*cannot decode level 0"):
        open_slide(files[1])
