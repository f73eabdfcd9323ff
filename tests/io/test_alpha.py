"""Alpha is blended onto white glass by one rule, pixel by pixel, whatever the file's size: an
RGBA file decoded whole (small), read lazily tile by tile (large, or as a slide) or given as a
PNG reaches the viewer and the model as the same RGB uint8. Before, only small files were
blended; the lazy readers dropped the alpha, so a transparent background read as the black
stored under it when the file was large."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_pathreview.io import load_image, slides
from napari_pathreview.io.openslide_slide import OpenSlideSource
from napari_pathreview.io.wsi import open_slide

HEIGHT, WIDTH = 96, 128


def _rgba(seed: int = 0) -> np.ndarray:
    """RGBA noise with a transparent band (black under alpha 0), a half-transparent band (black
    under alpha 128), a band of every alpha, and opaque tissue below."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    pixels[:24, :, :3], pixels[:24, :, 3] = 0, 0
    pixels[24:48, :, :3], pixels[24:48, :, 3] = 0, 128
    pixels[64:, :, 3] = 255
    return pixels


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """The rule written out: colour · a/255 + white · (1 − a/255), rounded to the nearest level."""
    colour, alpha = rgba[..., :3].astype(np.float64), rgba[..., 3:].astype(np.float64) / 255
    return np.rint(colour * alpha + 255 * (1 - alpha)).astype(np.uint8)


def _tiled_tiff(path: Path, pixels: np.ndarray) -> Path:
    """An RGBA (unassociated alpha) TIFF in 32×32 tiles, so a lazy read crosses tiles."""
    tifffile.imwrite(path, pixels, photometric="rgb", tile=(32, 32))
    return path


def _small_then_large(path: Path, monkeypatch: pytest.MonkeyPatch, **options) -> tuple:
    """The file decoded whole, then lazily over the eager-read limit (as the suite does)."""
    small = load_image(path, **options)
    assert isinstance(small.data, np.ndarray)
    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)
    large = load_image(path, **options)
    assert not isinstance(large.data, np.ndarray)  # read lazily
    return small, large


def test_an_rgba_tiff_reads_the_same_small_large_and_as_a_slide(tmp_path, monkeypatch):
    pixels = _rgba()
    path = _tiled_tiff(tmp_path / "section.tif", pixels)
    small, large = _small_then_large(path, monkeypatch)
    assert large.slide is not None  # the large file opens as a TiffSlide
    with open_slide(path) as slide:
        region = slide.read_region(0, 0, 0, HEIGHT, WIDTH)
    expected = _over_white(pixels)
    assert np.array_equal(small.data, expected)
    assert np.array_equal(np.asarray(large.data), expected)
    assert np.array_equal(region, expected)


def test_transparent_glass_reads_white_and_half_transparent_black_reads_mid_grey(
    tmp_path, monkeypatch
):
    path = _tiled_tiff(tmp_path / "section.tif", _rgba())
    small, large = _small_then_large(path, monkeypatch)
    for data in (np.asarray(small.data), np.asarray(large.data)):
        assert (data[:24] == 255).all()  # glass, not the black stored under alpha 0
        assert (data[24:48] == 127).all()  # 255 · (1 − 128/255), rounded


def test_a_slide_region_crossing_tiles_reads_as_the_whole_image(tmp_path):
    pixels = _rgba()
    path = _tiled_tiff(tmp_path / "section.tif", pixels)
    with open_slide(path) as slide:
        window = slide.read_region(0, 20, 30, 40, 50)  # level 0, y, x, h, w: four tiles
    assert np.array_equal(window, _over_white(pixels)[20:60, 30:80])


def test_an_rgba_colour_stack_reads_the_same_small_and_large(tmp_path, monkeypatch):
    frames = np.stack([_rgba(seed) for seed in range(3)])
    path = tmp_path / "zstack.tif"
    tifffile.imwrite(path, frames, photometric="rgb", tile=(32, 32))
    small, large = _small_then_large(path, monkeypatch, frame="all")
    assert small.frames == large.frames == 3
    assert np.array_equal(small.data, _over_white(frames))
    assert np.array_equal(np.asarray(large.data), _over_white(frames))


def test_a_16_bit_rgba_tiff_scales_its_alpha_by_the_stated_depth_then_blends(tmp_path, monkeypatch):
    pixels8 = _rgba()
    pixels16 = pixels8.astype(np.uint16) * 257  # 16 bits stated: 255 · 257 = 65535 is opaque
    path = _tiled_tiff(tmp_path / "deep.tif", pixels16)
    small, large = _small_then_large(path, monkeypatch)
    assert np.array_equal(small.data, _over_white(pixels8))
    assert np.array_equal(np.asarray(large.data), _over_white(pixels8))


def test_an_rgba_png_reads_as_the_same_pixels_as_the_tiff(tmp_path):
    pixels = _rgba()
    png = tmp_path / "tile.png"
    Image.fromarray(pixels, mode="RGBA").save(png)
    tiff = _tiled_tiff(tmp_path / "tile.tif", pixels)
    assert np.array_equal(load_image(png).data, _over_white(pixels))
    assert np.array_equal(load_image(png).data, load_image(tiff).data)


def test_openslide_reads_the_rgba_tiff_onto_white_within_its_premultiplied_rounding(tmp_path):
    # OpenSlide keeps premultiplied 8-bit ARGB and openslide-python un-premultiplies it, so a
    # partly transparent pixel may come back one level off; transparent and opaque ones exact.
    pixels = _rgba()
    path = _tiled_tiff(tmp_path / "section.tif", pixels)
    with OpenSlideSource(path) as slide:
        region = slide.read_region(0, 0, 0, HEIGHT, WIDTH)
    expected = _over_white(pixels).astype(int)
    assert np.abs(region.astype(int) - expected).max() <= 1
    assert np.array_equal(region[:48], expected[:48])  # alpha 0 and 128 over black
    assert np.array_equal(region[64:], expected[64:])  # opaque tissue


def test_grey_with_alpha_reads_the_same_small_and_large(tmp_path, monkeypatch):
    grey_alpha = _rgba()[..., 2:]  # one grey sample and the alpha
    path = tmp_path / "film.tif"
    tifffile.imwrite(path, grey_alpha, photometric="minisblack", extrasamples=["unassalpha"])
    small, large = _small_then_large(path, monkeypatch)
    expected = _over_white(
        np.concatenate([np.repeat(grey_alpha[..., :1], 3, -1), grey_alpha[..., 1:]], -1)
    )
    assert np.array_equal(small.data, expected[..., 0])
    assert np.array_equal(np.asarray(large.data), expected[..., 0])
