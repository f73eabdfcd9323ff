"""load_image and to_rgb_uint8: every dtype and channel layout handled on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.io import LoadedImage, load_image, to_rgb_uint8


def test_grayscale_is_replicated_to_three_channels() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb_uint8(gray)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], gray) and np.array_equal(rgb[..., 2], gray)


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red stays red
    rgba[1, 1] = (0, 0, 0, 0)  # transparent becomes white background
    rgb = to_rgb_uint8(rgba)
    assert tuple(rgb[0, 0]) == (200, 0, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_uint16_is_scaled_by_its_bit_depth() -> None:
    twelve_bit = np.array([[0, 4095]], dtype=np.uint16)
    assert to_rgb_uint8(twelve_bit)[0, :, 0].tolist() == [0, 255]
    full = np.array([[0, 65535, 32896]], dtype=np.uint16)
    assert to_rgb_uint8(full)[0, :, 0].tolist() == [0, 255, 128]


def test_float_unit_range_and_bool() -> None:
    assert to_rgb_uint8(np.array([[0.0, 1.0]]))[0, :, 1].tolist() == [0, 255]
    assert to_rgb_uint8(np.array([[False, True]]))[0, :, 1].tolist() == [0, 255]


def test_float_within_0_to_255_reads_as_those_levels_like_uint8() -> None:
    greys = np.array([[40.0, 120.4, 200.0]], dtype=np.float32)
    assert to_rgb_uint8(greys)[0, :, 0].tolist() == [40, 120, 200]
    assert to_rgb_uint8(np.full((2, 2), 180.0))[0, 0].tolist() == [180, 180, 180]


def test_float_rgba_with_opaque_alpha_of_255_keeps_its_colours() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.float32)
    rgba[..., :3], rgba[..., 3] = (180.0, 60.0, 150.0), 255.0
    assert to_rgb_uint8(rgba)[1, 1].tolist() == [180, 60, 150]


def test_float_outside_0_to_255_is_still_stretched_min_to_max() -> None:
    assert to_rgb_uint8(np.array([[-1.0, 1000.0]]))[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("channels", [None, 3])
def test_float32_tiff_of_0_to_255_values_is_not_contrast_stretched(
    tmp_path: Path, channels: int | None
) -> None:
    import tifffile

    ramp = np.tile(np.linspace(40.0, 200.0, 32, dtype=np.float32), (16, 1))
    pixels = ramp if channels is None else np.stack([ramp, ramp * 0.5, ramp * 0.8], axis=-1)
    tifffile.imwrite(tmp_path / "float.tif", pixels, photometric="rgb" if channels else None)
    loaded = load_image(tmp_path / "float.tif")
    assert loaded.metadata["original_dtype"] == "float32"
    assert np.array_equal(loaded.data, np.rint(pixels).astype(np.uint8))


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_signed_integer_tiff_of_0_to_255_values_is_not_contrast_stretched(
    tmp_path: Path, dtype: type, channels: int | None
) -> None:
    import tifffile

    ramp = np.tile(np.linspace(40, 200, 32).round().astype(dtype), (16, 1))
    pixels = ramp if channels is None else np.stack([ramp, ramp // 2, ramp // 4 * 3], axis=-1)
    tifffile.imwrite(tmp_path / "signed.tif", pixels, photometric="rgb" if channels else None)
    loaded = load_image(tmp_path / "signed.tif")
    assert loaded.metadata["original_dtype"] == np.dtype(dtype).name
    assert np.array_equal(loaded.data, pixels.astype(np.uint8))


def test_signed_integers_outside_0_to_255_are_still_stretched_min_to_max() -> None:
    assert to_rgb_uint8(np.array([[-55, 45, 200]], np.int16))[0, :, 0].tolist() == [0, 100, 255]
    assert to_rgb_uint8(np.array([[0, 400, 1020]], np.int16))[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize("shape", [(5,), (2, 3, 5), (1, 2, 3, 3), (0, 4)])
def test_impossible_shapes_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInputError):
        to_rgb_uint8(np.zeros(shape, dtype=np.uint8))


def test_nan_raises() -> None:
    with pytest.raises(InvalidInputError, match="NaN"):
        to_rgb_uint8(np.array([[np.nan, 1.0]]))


def test_rgb_png_is_histology(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tile.png")
    loaded = load_image(tmp_path / "tile.png")
    assert isinstance(loaded, LoadedImage)
    assert loaded.modality == "histology" and np.array_equal(loaded.data, pixels)
    assert loaded.levels[0] is loaded.data and loaded.scale == (1.0, 1.0)
    assert loaded.metadata["source_path"] == str((tmp_path / "tile.png").resolve())


def test_rgba_png_is_histology_on_white(tmp_path: Path) -> None:
    pixels = np.zeros((8, 8, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "clear.png")
    loaded = load_image(tmp_path / "clear.png")
    assert loaded.data.shape == (8, 8, 3) and loaded.data.min() == 255
    assert loaded.metadata["original_shape"] == [8, 8, 4]


def test_grayscale_png_is_a_mammogram(tmp_path: Path) -> None:
    Image.fromarray(np.full((16, 12), 7, dtype=np.uint8)).save(tmp_path / "gray.png")
    loaded = load_image(tmp_path / "gray.png")
    assert loaded.modality == "mammogram" and loaded.data.shape == (16, 12)


def test_an_rgb_png_of_a_grey_film_is_a_mammogram(sample_data: Path, tmp_path: Path) -> None:
    """A MIAS film saved as 8-bit RGB (R = G = B) used to open as histology."""
    grey = np.asarray(Image.open(sample_data / "mias" / "mdb028.pgm"))
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "mdb028.png")
    loaded = load_image(tmp_path / "mdb028.png")
    assert loaded.modality == "mammogram" and np.array_equal(loaded.data, grey)
    assert loaded.scale == (0.2, 0.2)  # a MIAS film's documented pixel size, as for its .pgm


def test_a_blank_rgb_png_stays_histology(tmp_path: Path) -> None:
    """One value throughout shows no content: its colour channels decide, as before."""
    Image.fromarray(np.full((16, 16, 3), 230, np.uint8)).save(tmp_path / "background.png")
    assert load_image(tmp_path / "background.png").modality == "histology"


def test_16bit_grayscale_png_keeps_16_bits(tmp_path: Path) -> None:
    pixels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 200).astype(np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    loaded = load_image(tmp_path / "deep.png")
    assert loaded.data.dtype == np.uint16 and np.array_equal(loaded.data, pixels)


def test_16bit_rgb_png_is_scaled_not_truncated(tmp_path: Path) -> None:
    import cv2

    rgb16 = np.zeros((4, 4, 3), dtype=np.uint16)
    rgb16[..., 0] = 65535  # pure red at full 16-bit scale
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    loaded = load_image(tmp_path / "deep_rgb.png")
    assert loaded.modality == "histology"
    assert tuple(loaded.data[0, 0]) == (255, 0, 0)
    assert loaded.metadata["original_dtype"] == "uint16"


def test_breakhis_name_makes_grayscale_histology(tmp_path: Path) -> None:
    path = tmp_path / "SOB_B_TA-14-16184-200-025.png"
    Image.fromarray(np.full((10, 10), 100, dtype=np.uint8)).save(path)
    loaded = load_image(path)
    assert loaded.modality == "histology" and loaded.data.shape == (10, 10, 3)
    assert loaded.metadata["subtype"] == "TA"


@pytest.mark.parametrize(
    "key",
    [
        "truncated_png",
        "empty_png",
        "garbage_pgm",
        "garbage_tif",
        "empty_dcm",
        "dicom_without_pixels",
    ],
)
def test_broken_files_raise_image_read_error(bad_files: dict[str, Path], key: str) -> None:
    with pytest.raises(ImageReadError, match=bad_files[key].name):
        load_image(bad_files[key])


def test_missing_and_unsupported_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "absent.png")
    (tmp_path / "notes.xyz").write_text("x")
    with pytest.raises(ImageReadError, match="unsupported image type"):
        load_image(tmp_path / "notes.xyz")
