"""Whole slides from generated files: Aperio SVS, OME-TIFF, DICOM WSI; the SlideSource contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
from slide_builders import (
    halvings,
    tissue_image,
    write_aperio_svs,
    write_dicom_wsi,
    write_ome_pyramid,
)

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io import BREAKHIS_UM_PER_PX, load_image, open_slide
from napari_pathreview.io.layers import layers_for_path
from napari_pathreview.io.wsi import slide_backend


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return tissue_image(600, 520)


@pytest.fixture
def svs(tmp_path: Path) -> Path:
    label = np.full((60, 100, 3), 230, np.uint8)
    label[20:40, 10:90] = 0  # a "barcode"
    return write_aperio_svs(
        tmp_path / "slide.svs",
        tissue_image(1100, 900),
        mpp=0.25,
        app_mag=40,
        label=label,
        macro=tissue_image(80, 200, 1),
    )


def _whole(slide, level: int) -> np.ndarray:
    height, width = slide.level_shapes[level]
    return slide.read_region(level, 0, 0, height, width)


def test_aperio_svs_reads_like_openslide(svs: Path) -> None:
    with open_slide(svs) as ours, openslide.OpenSlide(svs) as reference:
        assert ours.backend == "tifffile"
        assert ours.level_shapes == tuple((h, w) for w, h in reference.level_dimensions)
        for level in range(ours.level_count):
            expected = np.asarray(
                reference.read_region((0, 0), level, reference.level_dimensions[level])
            )
            assert np.array_equal(_whole(ours, level), expected[..., :3])


def test_aperio_mpp_and_magnification_are_read(svs: Path) -> None:
    with open_slide(svs) as slide:
        assert slide.um_per_px == pytest.approx(0.25) and slide.objective_power == 40.0
    loaded = load_image(svs)
    assert loaded.scale == pytest.approx((0.25, 0.25)) and loaded.um_per_px == pytest.approx(0.25)
    assert loaded.slide is not None and loaded.multiscale


def test_label_and_macro_are_available_but_not_shown(svs: Path) -> None:
    with open_slide(svs) as slide, openslide.OpenSlide(svs) as reference:
        assert set(slide.associated_images) == {"label", "macro", "thumbnail"}
        label = slide.associated_images["label"]
        assert np.array_equal(
            label, np.asarray(reference.associated_images["label"].convert("RGB"))
        )
    default = layers_for_path(svs)
    assert len(default) == 1  # the image only: the label may carry patient identifiers
    asked = layers_for_path(svs, associated=("label", "macro"))
    extra = {kwargs["metadata"]["pathreview"]["associated"]: kwargs for _, kwargs, _ in asked[1:]}
    assert set(extra) == {"label", "macro"}
    assert all(kwargs["visible"] is False for kwargs in extra.values())


def test_ome_tiff_pyramid_keeps_levels_and_physical_size(tmp_path: Path) -> None:
    source = tissue_image(600, 520)
    path = write_ome_pyramid(tmp_path / "slide.ome.tif", source, mpp=0.5)
    with open_slide(path) as slide:
        assert slide.level_shapes == ((600, 520), (300, 260), (150, 130))
        assert slide.um_per_px == pytest.approx(0.5)
        for level, expected in enumerate(halvings(source, 3)):
            assert np.array_equal(_whole(slide, level), expected)


@pytest.mark.parametrize("sparse", [False, True], ids=["TILED_FULL", "TILED_SPARSE"])
@pytest.mark.parametrize("syntax", ["uncompressed", "jpeg2000"])
def test_dicom_wsi_levels_are_exact(tmp_path: Path, image, syntax: str, sparse: bool) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image, syntax=syntax, sparse=sparse, mpp=0.5)
    with open_slide(files[0]) as slide:  # any one instance opens the whole series
        assert slide.backend == "wsidicom"
        assert slide.level_shapes == ((600, 520), (300, 260), (150, 130))
        assert slide.um_per_px == pytest.approx(0.5) and slide.objective_power == 20.0
        for level, expected in enumerate(halvings(image, 3)):
            assert np.array_equal(_whole(slide, level), expected)


def test_dicom_wsi_jpeg_matches_openslide(tmp_path: Path, image) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image, syntax="jpeg")
    with open_slide(files[2]) as ours, openslide.OpenSlide(files[0]) as reference:
        assert ours.level_shapes == tuple((h, w) for w, h in reference.level_dimensions)
        for level in range(ours.level_count):
            expected = np.asarray(
                reference.read_region((0, 0), level, reference.level_dimensions[level])
            )
            assert np.array_equal(_whole(ours, level), expected[..., :3])


def test_dicom_wsi_layer_is_multiscale_in_um(tmp_path: Path, image) -> None:
    files = write_dicom_wsi(tmp_path / "wsi", image)
    [(data, kwargs, kind)] = layers_for_path(tmp_path / "wsi")
    assert kind == "image" and kwargs["multiscale"] and len(data) == 3
    assert kwargs["scale"] == pytest.approx((0.5, 0.5)) and kwargs["units"] == ("um", "um")
    assert np.array_equal(np.asarray(data[1][10:20, 30:40]), halvings(image, 2)[1][10:20, 30:40])
    assert load_image(files[1]).metadata["backend"] == "wsidicom"


def test_single_frame_dicom_is_still_a_mammogram(dicom_factory, ramp12) -> None:
    loaded = load_image(dicom_factory("mammo.dcm", ramp12))
    assert loaded.modality == "mammogram" and loaded.slide is None


def test_read_region_pads_outside_the_level_with_white(image, tmp_path: Path) -> None:
    path = write_ome_pyramid(tmp_path / "s.ome.tif", image)
    with open_slide(path) as slide:
        region = slide.read_region(1, -10, 250, 40, 30)  # level 1 is 300×260
        assert region.shape == (40, 30, 3) and region.dtype == np.uint8
        assert np.all(region[:10] == 255) and np.all(region[:, 10:] == 255)
        assert np.array_equal(region[10:, :10], halvings(image, 2)[1][:30, 250:260])


def test_levels_are_lazy_dask_arrays_on_tiles(image, tmp_path: Path) -> None:
    import dask.array as da

    files = write_dicom_wsi(tmp_path / "wsi", image, tile=64)
    with open_slide(files[0]) as slide:
        levels = slide.level_arrays()
        assert all(isinstance(level, da.Array) for level in levels)
        assert levels[0].chunksize[:2] == (512, 512)  # 8×8 native tiles per chunk
        assert np.array_equal(np.asarray(levels[0][100:300, 200:500]), image[100:300, 200:500])


def test_fingerprint_is_stable_and_content_sensitive(image, tmp_path: Path) -> None:
    first = write_ome_pyramid(tmp_path / "a.ome.tif", image)
    second = write_ome_pyramid(tmp_path / "b.ome.tif", 255 - image)
    with open_slide(first) as a, open_slide(first) as again, open_slide(second) as b:
        assert a.fingerprint == again.fingerprint != b.fingerprint
        assert len(a.fingerprint) == 64


def test_reading_a_closed_slide_or_a_missing_level_is_refused(image, tmp_path: Path) -> None:
    slide = open_slide(write_ome_pyramid(tmp_path / "s.ome.tif", image))
    with pytest.raises(InvalidInputError, match="level 7"):
        slide.read_region(7, 0, 0, 10, 10)
    slide.close()
    with pytest.raises(InvalidInputError, match="closed"):
        slide.read_region(0, 0, 0, 10, 10)


def _unscaled_pyramid(image: np.ndarray, path: Path) -> Path:
    """A pyramid with no resolution tags at all."""
    import tifffile

    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(128, 128), subifds=1, metadata=None)
        tif.write(halvings(image, 2)[1], tile=(128, 128), subfiletype=1, metadata=None)
    return path


def test_user_pixel_size_fills_in_an_unknown_one(image, tmp_path: Path) -> None:
    path = _unscaled_pyramid(image, tmp_path / "plain.tif")
    unknown = load_image(path)
    assert unknown.um_per_px is None and unknown.scale == (1.0, 1.0)
    assert unknown.scale_unit == "pixel"
    given = load_image(path, um_per_px=0.3)
    assert given.scale == pytest.approx((0.3, 0.3)) and given.slide.um_per_px == pytest.approx(0.3)
    [(_, kwargs, _)] = layers_for_path(path, um_per_px=0.3)
    assert kwargs["units"] == ("um", "um")


@pytest.mark.parametrize("bad", [0.0, -0.3, float("nan"), float("inf")])
def test_a_user_pixel_size_that_is_not_a_positive_number_is_refused(
    image, tmp_path: Path, bad: float
) -> None:
    path = _unscaled_pyramid(image, tmp_path / "plain.tif")
    with pytest.raises(InvalidInputError, match=r"plain\.tif: pixel size must be positive"):
        load_image(path, um_per_px=bad)


def test_breakhis_patch_gets_its_magnification_pixel_size(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "SOB_M_DC-14-2523-200-010.png"
    Image.fromarray(tissue_image(460, 700)).save(path)  # as captured: 700×460
    loaded = load_image(path)
    assert loaded.um_per_px == BREAKHIS_UM_PER_PX[200] == pytest.approx(0.0985)
    assert loaded.scale == pytest.approx((0.0985, 0.0985))
    with open_slide(path) as slide:  # a patch is a one-level slide for tiled code
        assert slide.backend == "memory" and slide.um_per_px == pytest.approx(0.0985)
        assert np.array_equal(slide.read_region(0, 0, 0, 64, 80), np.asarray(loaded.data)[:64, :80])


@pytest.mark.parametrize(
    ("name", "backend"),
    [("a.svs", "tifffile"), ("a.ndpi", "openslide"), ("a.mrxs", "openslide"), ("a.png", "memory")],
)
def test_backend_is_chosen_by_format(tmp_path: Path, image, name: str, backend: str) -> None:
    path = tmp_path / name
    if name.endswith(".svs"):
        write_aperio_svs(path, image)
    else:
        path.write_bytes(b"\x00" * 16)
    assert slide_backend(path) == backend


def test_concurrent_reads_return_the_right_pixels(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    source = tissue_image(1100, 900)
    path = write_aperio_svs(tmp_path / "s.svs", source)
    with open_slide(path) as slide:
        expected = {
            yx: slide.read_region(0, *yx, 300, 300) for yx in [(0, 0), (400, 500), (700, 100)]
        }
    with open_slide(path) as slide, ThreadPoolExecutor(8) as pool:
        jobs = [
            (yx, pool.submit(slide.read_region, 0, *yx, 300, 300))
            for yx in expected
            for _ in range(8)
        ]
        assert all(np.array_equal(job.result(), expected[yx]) for yx, job in jobs)


def test_selecting_every_instance_of_a_series_opens_it_once(tmp_path: Path, image) -> None:
    from napari_pathreview._reader import read_paths

    files = write_dicom_wsi(tmp_path / "wsi", image, n_levels=3)
    layers = read_paths([str(f) for f in files])
    assert len(layers) == 1 and layers[0][1]["multiscale"]


def test_openslide_and_tifffile_backends_agree_on_an_svs(svs: Path) -> None:
    with open_slide(svs, backend="openslide") as other, open_slide(svs) as ours:
        assert other.backend == "openslide" and ours.backend == "tifffile"
        assert other.level_shapes == ours.level_shapes
        assert other.um_per_px == pytest.approx(ours.um_per_px)
        assert other.objective_power == ours.objective_power
        for level in range(ours.level_count):
            assert np.array_equal(_whole(other, level), _whole(ours, level))
        assert np.array_equal(other.associated_images["label"], ours.associated_images["label"])


@pytest.mark.parametrize("given", [0, -0.5, float("nan")])
def test_a_given_pixel_size_that_is_not_positive_is_refused_naming_the_file(
    svs: Path, given: float
) -> None:
    """Not ignored: a 0 once fell through ``if um_per_px`` and left the file's size in place."""
    with pytest.raises(InvalidInputError, match=f"{svs.name}.*pixel size must be positive"):
        open_slide(svs, um_per_px=given)


def test_a_given_pixel_size_replaces_the_file_s_with_a_warning_naming_the_file(
    svs: Path, caplog
) -> None:
    with (
        caplog.at_level("WARNING", logger="napari_pathreview.io.wsi"),
        open_slide(svs, um_per_px=0.5) as slide,
    ):
        assert slide.um_per_px == 0.5
    assert any(
        record.levelname == "WARNING" and str(svs) in record.getMessage()
        for record in caplog.records
    )
