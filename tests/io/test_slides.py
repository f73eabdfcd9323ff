"""Pyramidal TIFF: written tiled with real downsampling, read back lazily as levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io import load_image
from napari_pathreview.io.pyramid import write_pyramidal_tiff


@pytest.fixture
def tissue() -> np.ndarray:
    """A smooth RGB image (JPEG-friendly), 1024×768."""
    rows, cols = np.mgrid[0:1024, 0:768]
    return np.stack([(rows // 4) % 256, (cols // 3) % 256, np.full_like(rows, 180)], -1).astype(
        np.uint8
    )


def test_written_pyramid_has_tiles_and_halving_levels(tissue, tmp_path: Path) -> None:
    path = write_pyramidal_tiff(tissue, tmp_path / "slide.tif", tile=256, n_levels=3)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        assert [level.shape for level in series.levels] == [
            (1024, 768, 3),
            (512, 384, 3),
            (256, 192, 3),
        ]
        assert tif.pages[0].is_tiled and tif.pages[0].tilewidth == 256


def test_pyramid_opens_as_lazy_levels(tissue, tmp_path: Path) -> None:
    import dask.array as da

    path = write_pyramidal_tiff(tissue, tmp_path / "slide.tif", compression="deflate")
    loaded = load_image(path)
    assert loaded.multiscale and loaded.modality == "histology"
    assert all(isinstance(level, da.Array) for level in loaded.levels)
    # whole tiles (2×2 of 256²), not the whole level
    assert loaded.levels[0].chunksize[:2] == (512, 512)
    assert loaded.data is loaded.levels[0]
    assert np.array_equal(np.asarray(loaded.levels[0][300:310, 500:520]), tissue[300:310, 500:520])
    assert loaded.metadata["levels"] == [[1024, 768, 3], [512, 384, 3], [256, 192, 3]]


def test_microns_per_pixel_becomes_scale(tissue, tmp_path: Path) -> None:
    path = write_pyramidal_tiff(tissue, tmp_path / "slide.tif", microns_per_pixel=0.5)
    loaded = load_image(path)
    assert loaded.scale == pytest.approx((0.5, 0.5))
    assert loaded.metadata["um_per_px"] == pytest.approx(0.5)
    assert loaded.um_per_px == pytest.approx(0.5) and loaded.scale_unit == "µm"


def test_16bit_pyramid_levels_become_uint8(tmp_path: Path) -> None:
    pixels = np.full((512, 512, 3), 65535, dtype=np.uint16)
    path = write_pyramidal_tiff(pixels, tmp_path / "deep.tif", compression="deflate", n_levels=2)
    loaded = load_image(path)
    assert loaded.levels[1].dtype == np.uint8
    assert int(loaded.levels[1][0, 0, 0].compute()) == 255


def test_plain_small_tiff_is_read_eagerly(tissue, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", tissue[:100, :80])
    loaded = load_image(tmp_path / "plain.tif")
    assert not loaded.multiscale and isinstance(loaded.data, np.ndarray)
    assert np.array_equal(loaded.data, tissue[:100, :80])


def test_planar_rgb_tiff_is_reordered(tissue, tmp_path: Path) -> None:
    planar = np.moveaxis(tissue[:64, :48], -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    loaded = load_image(tmp_path / "planar.tif")
    assert np.array_equal(loaded.data, tissue[:64, :48])


def test_grayscale_16bit_tiff_is_a_mammogram(tmp_path: Path) -> None:
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    tifffile.imwrite(tmp_path / "mammo.tif", pixels)
    loaded = load_image(tmp_path / "mammo.tif")
    assert loaded.modality == "mammogram" and loaded.data.dtype == np.uint16


def test_pyramidal_colour_tiff_of_a_grey_film_is_a_lazy_mammogram(tmp_path: Path) -> None:
    import dask.array as da

    rows, cols = np.mgrid[0:1024, 0:768]
    film = ((rows // 5 + cols // 7) % 256).astype(np.uint8)  # R = G = B, a film saved as RGB
    rgb = np.repeat(film[..., None], 3, axis=-1)
    path = write_pyramidal_tiff(rgb, tmp_path / "film.tif", compression="deflate")
    loaded = load_image(path)
    assert loaded.modality == "mammogram" and loaded.multiscale
    assert all(isinstance(level, da.Array) and level.ndim == 2 for level in loaded.levels)
    assert np.array_equal(np.asarray(loaded.levels[0][300:310, 500:520]), film[300:310, 500:520])


def test_bad_tile_size_and_jpeg_16bit_are_refused(tissue, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="multiple of 16"):
        write_pyramidal_tiff(tissue, tmp_path / "x.tif", tile=100)
    with pytest.raises(InvalidInputError, match="JPEG"):
        write_pyramidal_tiff(tissue.astype(np.uint16), tmp_path / "x.tif", compression="jpeg")


def test_big_single_level_tiff_stays_lazy_with_overviews(tmp_path: Path, monkeypatch) -> None:
    import dask.array as da

    from napari_pathreview.io import slides

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1024)  # treat this file as "too big"
    monkeypatch.setattr(slides, "VIRTUAL_LEVEL_EDGE", 256)
    pixels = np.random.default_rng(3).integers(0, 255, (1024, 512, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "flat.tif", pixels, tile=(128, 128), compression="deflate")
    loaded = load_image(tmp_path / "flat.tif")
    assert all(isinstance(level, da.Array) for level in loaded.levels)
    shapes = [level.shape[:2] for level in loaded.levels]
    assert shapes == [(1024, 512), (512, 256), (256, 128), (128, 64)]
    assert loaded.metadata["virtual_levels"] is True
    assert np.array_equal(np.asarray(loaded.levels[2]), pixels[::4, ::4])


_BROWSE_UNDER_MEMORY_LIMIT = """
import resource, sys
limit = 1024 * 2**20  # 1 GiB of address space; level 0 alone is 1.2 GiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
from napari_pathreview.io import load_image
loaded = load_image(sys.argv[1])
assert loaded.levels[0].shape == (20480, 20480, 3), loaded.levels[0].shape
corner = np.asarray(loaded.levels[0][5 * 1024 : 5 * 1024 + 8, 7 * 1024 : 7 * 1024 + 8])
overview = np.asarray(loaded.levels[-1])
print(int(corner[0, 0, 0]), overview.shape)
"""


@pytest.mark.slow
def test_slide_larger_than_the_memory_limit_is_browsable(tmp_path: Path) -> None:
    import subprocess
    import sys

    edge, tile = 20480, 1024
    # coloured shades (R ≠ G): tiles whose R = G = B would make the file a grey film
    shades = [np.full((tile, tile, 3), (value, 250 - value, 128), np.uint8) for value in range(251)]

    def tiles(size: int):
        for row in range(0, size, tile):
            for col in range(0, size, tile):
                yield shades[(row // tile + col // tile) % 251]

    path = tmp_path / "big.tif"
    options = {
        "dtype": np.uint8,
        "compression": "deflate",
        "compressionargs": {"level": 1},
        "photometric": "rgb",
        "tile": (tile, tile),  # one tile size for all levels, or tifffile sees no pyramid
    }
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        writer.write(tiles(edge), shape=(edge, edge, 3), subifds=2, **options)
        for size in (edge // 4, edge // 16):
            writer.write(tiles(size), shape=(size, size, 3), subfiletype=1, **options)
    result = subprocess.run(
        [sys.executable, "-c", _BROWSE_UNDER_MEMORY_LIMIT, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == str((5 + 7) % 251)
    assert "(1280, 1280, 3)" in result.stdout
