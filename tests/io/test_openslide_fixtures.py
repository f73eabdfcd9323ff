"""Outside data: openslide-python's own test slides read exactly as OpenSlide reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openslide
import pytest

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io import load_image, open_slide
from napari_pathreview.io.layers import layers_for_path

READABLE = ["small.svs", "boxes.tiff", "boxes_0.dcm", "boxes_1.dcm", "\N{NEUTRAL FACE}.svs"]


def openslide_rgb(slide: openslide.OpenSlide, level: int) -> np.ndarray:
    """A whole level as OpenSlide returns it, composited on white like ours."""
    width, height = slide.level_dimensions[level]
    rgba = np.asarray(slide.read_region((0, 0), level, (width, height))).astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    return np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


@pytest.mark.parametrize("name", READABLE)
def test_every_level_matches_openslide(openslide_fixtures: Path, name: str) -> None:
    path = openslide_fixtures / name
    with open_slide(path) as ours, openslide.OpenSlide(path) as reference:
        assert ours.level_shapes == tuple((h, w) for w, h in reference.level_dimensions)
        assert ours.level_downsamples == pytest.approx(reference.level_downsamples)
        for level, (height, width) in enumerate(ours.level_shapes):
            pixels = ours.read_region(level, 0, 0, height, width)
            assert np.array_equal(pixels, openslide_rgb(reference, level)), (name, level)


@pytest.mark.parametrize("name", READABLE)
def test_pixel_size_and_objective_match_openslide(openslide_fixtures: Path, name: str) -> None:
    path = openslide_fixtures / name
    with open_slide(path) as ours, openslide.OpenSlide(path) as reference:
        mpp = float(reference.properties[openslide.PROPERTY_NAME_MPP_X])
        assert ours.um_per_px == pytest.approx(mpp)
        power = reference.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        assert ours.objective_power == (float(power) if power else None)


@pytest.mark.parametrize("name", READABLE)
def test_load_image_level0_equals_openslide(openslide_fixtures: Path, name: str) -> None:
    path = openslide_fixtures / name
    loaded = load_image(path)
    with openslide.OpenSlide(path) as reference:
        assert np.array_equal(np.asarray(loaded.data), openslide_rgb(reference, 0))
        assert loaded.modality == "histology"


def test_dicom_wsi_is_its_image_not_the_padded_frame(openslide_fixtures: Path) -> None:
    loaded = load_image(openslide_fixtures / "boxes_0.dcm")
    assert loaded.data.shape == (16, 16, 3)  # the frame is 64×64; the image is 16×16
    assert loaded.um_per_px == pytest.approx(0.499)
    assert loaded.scale == pytest.approx((0.499, 0.499))


def test_dicom_wsi_folder_opens_its_series(openslide_fixtures: Path, tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(openslide_fixtures / name, folder / name)
    with open_slide(folder) as slide:
        assert slide.backend == "wsidicom" and slide.level_shapes == ((16, 16),)
        assert "thumbnail" in slide.associated_images


@pytest.mark.parametrize("name", ["small.svs", "boxes_0.dcm"])
def test_associated_images_match_openslide(openslide_fixtures: Path, name: str) -> None:
    path = openslide_fixtures / name
    with open_slide(path) as ours, openslide.OpenSlide(path) as reference:
        assert sorted(ours.associated_images) == sorted(reference.associated_images)
        for key, image in reference.associated_images.items():
            assert np.array_equal(ours.associated_images[key], np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("name", ["unreadable.svs", "unopenable.tiff"])
def test_broken_slides_give_an_error_naming_the_file(openslide_fixtures: Path, name: str) -> None:
    with pytest.raises(ImageReadError, match=name):
        load_image(openslide_fixtures / name)
    with pytest.raises(ImageReadError, match=name):
        layers_for_path(openslide_fixtures / name)


def test_unreadable_svs_fails_at_open_time_not_while_panning(openslide_fixtures: Path) -> None:
    with pytest.raises(ImageReadError, match="cannot decode"):
        load_image(openslide_fixtures / "unreadable.svs")


def test_non_ascii_file_name_opens(openslide_fixtures: Path) -> None:
    layers = layers_for_path(openslide_fixtures / "\N{NEUTRAL FACE}.svs")
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["name"] == "\N{NEUTRAL FACE}"
    assert kwargs["units"] == ("um", "um")
