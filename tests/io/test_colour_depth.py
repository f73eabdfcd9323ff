"""Deep colour (12- or 16-bit samples) reaches 8 bits by the depth the file states, whether the
file is decoded whole (small) or read lazily, tile by tile (large, or a slide): the same pixels
give the same uint8 frames, and so the same model input, whatever the file's size. Before, a
small stack scaled by the bits its values used and a large one by 16 bits, so a 12-bit stack
opened darker when large."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_pathreview.io import load_image, slides

TWELVE_BIT_WHITE = 4095


@pytest.fixture
def frames12() -> np.ndarray:
    """Three 12-bit RGB frames: noise over the full 12-bit range, with a dark top-left quarter
    (values under 256), so a tile-by-tile reading by each tile's own range would show."""
    frames = np.random.default_rng(1).integers(0, 4096, (3, 64, 96, 3)).astype(np.uint16)
    frames[:, :32, :48] //= 16
    frames[0, 0, 0] = TWELVE_BIT_WHITE
    return frames


def _as_8_bit(pixels: np.ndarray, bits: int) -> np.ndarray:
    """The stated-depth rule written out: 2**bits - 1 is 255, rounded to the nearest level."""
    return np.rint(pixels.astype(np.float64) * 255 / (2**bits - 1)).astype(np.uint8)


def _small_and_large(path: Path, monkeypatch: pytest.MonkeyPatch, **options) -> tuple:
    """The file opened as the eager reader decodes it whole, then as a lazy read over the
    eager-read limit (the limit monkeypatched, as the suite does)."""
    small = load_image(path, **options)
    assert isinstance(small.data, np.ndarray)
    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)
    large = load_image(path, **options)
    assert not isinstance(large.data, np.ndarray)  # read lazily
    return np.asarray(small.data), np.asarray(large.data)


def _packed_12_bit(path: Path, pixels: np.ndarray) -> Path:
    """A TIFF of 12-bit samples (BitsPerSample 12), tiled 32×32."""
    tifffile.imwrite(path, pixels, photometric="rgb", bitspersample=12, tile=(32, 32))
    return path


def _ome_12_of_16(path: Path, pixels: np.ndarray) -> Path:
    """An OME-TIFF of 16-bit samples whose metadata states 12 significant bits."""
    axes = "ZYXS" if pixels.ndim == 4 else "YXS"
    metadata = {"SignificantBits": 12, "axes": axes}
    tifffile.imwrite(path, pixels, photometric="rgb", metadata=metadata, tile=(32, 32), ome=True)
    return path


TWELVE_BIT_TIFFS: dict[str, Callable[[Path, np.ndarray], Path]] = {
    "bits_per_sample_12": _packed_12_bit,
    "ome_significant_bits_12": _ome_12_of_16,
}


@pytest.mark.parametrize("write", TWELVE_BIT_TIFFS.values(), ids=TWELVE_BIT_TIFFS.keys())
def test_a_12_bit_colour_tiff_stack_reads_the_same_small_and_large(
    tmp_path, monkeypatch, frames12, write
):
    path = write(tmp_path / "stack.tif", frames12)
    small, large = _small_and_large(path, monkeypatch, frame="all")
    assert small.dtype == large.dtype == np.uint8
    assert np.array_equal(small, large)
    assert np.array_equal(large, _as_8_bit(frames12, 12))
    assert tuple(large[0, 0, 0]) == (255, 255, 255)  # 12-bit white is white


@pytest.mark.parametrize("write", TWELVE_BIT_TIFFS.values(), ids=TWELVE_BIT_TIFFS.keys())
def test_a_12_bit_colour_tiff_reads_the_same_as_an_image_and_as_a_slide(
    tmp_path, monkeypatch, frames12, write
):
    path = write(tmp_path / "section.tif", frames12[0])
    small, large = _small_and_large(path, monkeypatch)
    assert np.array_equal(small, large)
    assert np.array_equal(large, _as_8_bit(frames12[0], 12))


def test_the_slide_reader_reads_a_12_bit_tiff_by_its_stated_depth(tmp_path, frames12):
    from napari_pathreview.io.wsi import open_slide

    path = _packed_12_bit(tmp_path / "section.tif", frames12[0])
    with open_slide(path) as slide:
        region = slide.read_region(0, 0, 0, 64, 96)  # level 0, y, x, h, w
    assert np.array_equal(region, _as_8_bit(frames12[0], 12))


def test_a_16_bit_full_range_colour_stack_maps_65535_to_255_small_and_large(
    tmp_path, monkeypatch, frames12
):
    frames16 = frames12 * 16
    frames16[0, 0, 0] = 65535
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, frames16, photometric="rgb")
    small, large = _small_and_large(path, monkeypatch, frame="all")
    assert np.array_equal(small, large)
    assert tuple(large[0, 0, 0]) == (255, 255, 255)
    assert np.array_equal(large, _as_8_bit(frames16, 16))


def test_a_16_bit_colour_file_is_scaled_by_its_stated_depth_not_by_its_values(tmp_path, frames12):
    path = tmp_path / "states_16.tif"  # 12-bit values, but the file says 16 bits
    tifffile.imwrite(path, frames12, photometric="rgb")
    loaded = load_image(path, frame="all")
    assert tuple(loaded.data[0, 0, 0]) == (16, 16, 16)  # 4095 of 65535, not white
    assert np.array_equal(loaded.data, _as_8_bit(frames12, 16))


def test_a_12_bit_colour_dicom_stack_reads_the_same_small_and_large(
    colour_dicom_factory, monkeypatch, frames12
):
    path = colour_dicom_factory("photos.dcm", frames12, bits_stored=12)
    small, large = _small_and_large(path, monkeypatch, frame="all")
    assert small.dtype == large.dtype == np.uint8
    assert np.array_equal(small, large)
    assert np.array_equal(large, _as_8_bit(frames12, 12))


def test_a_16_bit_full_range_colour_dicom_maps_65535_to_255(
    colour_dicom_factory, monkeypatch, frames12
):
    frames16 = frames12 * 16
    frames16[0, 0, 0] = 65535
    path = colour_dicom_factory("photos.dcm", frames16, bits_stored=16)
    small, large = _small_and_large(path, monkeypatch, frame="all")
    assert np.array_equal(small, large)
    assert tuple(large[0, 0, 0]) == (255, 255, 255)
    assert np.array_equal(large, _as_8_bit(frames16, 16))


def test_a_16_bit_colour_png_is_scaled_by_its_significant_bits(tmp_path, frames12):
    import zlib

    import cv2

    pixels = frames12[0] // 2  # 11 bits used of the 12 the file states
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), pixels[..., ::-1])  # OpenCV writes BGR
    data = path.read_bytes()
    body = b"sBIT" + bytes([12, 12, 12])  # sBIT after IHDR (8 + 25 bytes): 12 bits used
    chunk = len(body[4:]).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    path.write_bytes(data[:33] + chunk + data[33:])
    loaded = load_image(path)
    assert np.array_equal(loaded.data, _as_8_bit(pixels, 12))
