"""Multi-frame images: a tomosynthesis DICOM or a multi-page grey TIFF opens whole as a stack
(frames first, mm scale, named as a stack); analysis reads one frame only when told which."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io import layers_for_path, load_image
from napari_pathreview.io.frames import MultiFrameError
from napari_pathreview.preflight import probe_image


@pytest.fixture
def frames12() -> np.ndarray:
    """Five 12-bit frames, each a different ramp, so a frame is known by its values."""
    ramp = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)
    return np.stack([(ramp + 700 * k) % 4096 for k in range(5)]).astype(np.uint16)


def _tomosynthesis(dicom_factory, pixels: np.ndarray, name: str = "dbt.dcm", **tags) -> Path:
    import pydicom

    path = dicom_factory(name, pixels)
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def test_a_multi_frame_dicom_opens_as_one_stack_layer_at_mm_scale(dicom_factory, frames12):
    path = _tomosynthesis(dicom_factory, frames12, SpacingBetweenSlices=1.0)
    [(data, kwargs, kind)] = layers_for_path(path)
    assert kind == "image" and data.shape == (5, 24, 32)
    assert np.array_equal(data, frames12)  # every frame, not the first five times
    assert kwargs["name"] == "dbt [5 frames]"
    assert kwargs["scale"] == pytest.approx((1.0, 0.07, 0.08))
    assert kwargs["units"] == ("mm", "mm", "mm")
    assert kwargs["metadata"]["pathreview"]["frames"] == 5


def test_the_frame_axis_falls_back_to_the_slice_thickness(dicom_factory, frames12):
    path = _tomosynthesis(dicom_factory, frames12, SliceThickness=0.5)
    [(_, kwargs, _)] = layers_for_path(path)
    assert kwargs["scale"][0] == pytest.approx(0.5)


def test_an_enhanced_object_states_its_spacing_in_the_shared_pixel_measures(
    dicom_factory, frames12
):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    measures = Dataset()
    measures.PixelSpacing = [0.1, 0.1]
    measures.SliceThickness = 1.0
    group = Dataset()
    group.PixelMeasuresSequence = Sequence([measures])
    path = _tomosynthesis(dicom_factory, frames12, SharedFunctionalGroupsSequence=Sequence([group]))
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PixelSpacing  # an enhanced object has none at the top level
    ds.save_as(path)
    [(_, kwargs, _)] = layers_for_path(path)
    assert kwargs["scale"] == pytest.approx((1.0, 0.1, 0.1))


def test_a_stack_without_a_frame_spacing_steps_one_per_frame(dicom_factory, frames12):
    [(_, kwargs, _)] = layers_for_path(_tomosynthesis(dicom_factory, frames12))
    assert kwargs["scale"] == pytest.approx((1.0, 0.07, 0.08))
    assert kwargs["units"] == ("pixel", "mm", "mm")


def test_a_multi_page_grey_tiff_opens_as_a_stack(tmp_path, frames12):
    path = tmp_path / "films.tif"
    tifffile.imwrite(path, frames12)
    [(data, kwargs, _)] = layers_for_path(path)
    assert np.array_equal(np.asarray(data), frames12)
    assert kwargs["name"] == "films [5 frames]" and kwargs["scale"] == (1.0, 1.0, 1.0)
    assert kwargs["metadata"]["pathreview"]["modality"] == "mammogram"


def test_a_large_grey_tiff_stack_opens_lazily_with_every_frame(tmp_path, frames12, monkeypatch):
    from napari_pathreview.io import slides

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)  # the stack counts as large
    path = tmp_path / "films.tif"
    tifffile.imwrite(path, frames12, tile=(16, 16))
    [(data, kwargs, _)] = layers_for_path(path)
    assert kwargs["metadata"]["pathreview"]["lazy"] is True
    assert data.shape == (5, 24, 32) and np.array_equal(np.asarray(data[3]), frames12[3])


@pytest.fixture
def colour_frames() -> np.ndarray:
    """Three RGB frames of noise, so a frame is known by its pixels."""
    return np.random.default_rng(0).integers(0, 255, (3, 40, 48, 3), dtype=np.uint8)


def test_a_multi_page_colour_tiff_opens_as_a_stack_of_rgb_frames(tmp_path, colour_frames):
    path = tmp_path / "he.tif"
    tifffile.imwrite(path, colour_frames)
    [(data, kwargs, _)] = layers_for_path(path)
    assert kwargs["rgb"] is True and np.array_equal(data, colour_frames)
    assert kwargs["name"] == "he [3 frames]" and probe_image(path).frames == 3
    assert kwargs["metadata"]["pathreview"]["modality"] == "histology"


def test_an_rgb_multi_frame_dicom_opens_in_napari_as_rgb_frames_with_a_slider(
    make_napari_viewer, colour_dicom_factory, colour_frames
):
    path = colour_dicom_factory("photos.dcm", colour_frames)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    assert layer.rgb and layer.ndim == 3 and layer.name == "photos [3 frames]"
    assert viewer.dims.nsteps[0] == 3
    viewer.dims.set_current_step(0, 2)
    assert np.array_equal(layer._slice.image.raw, colour_frames[2])


def test_a_chosen_frame_of_an_rgb_stack_is_read_as_an_rgb_image(
    colour_dicom_factory, colour_frames
):
    path = colour_dicom_factory("photos.dcm", colour_frames)
    loaded = load_image(path, frame=1)
    assert loaded.modality == "histology" and loaded.frames == 1
    assert np.array_equal(loaded.data, colour_frames[1])
    with pytest.raises(MultiFrameError, match="3 frames"):
        load_image(path)


def test_analysis_refuses_a_stack_naming_its_frames_and_how_to_choose_one(dicom_factory, frames12):
    path = _tomosynthesis(dicom_factory, frames12)
    with pytest.raises(MultiFrameError) as raised:
        load_image(path)
    message = str(raised.value)
    assert str(path) in message and "5 frames" in message
    assert "--frame K" in message and "0 to 4" in message


def test_a_chosen_frame_is_read_as_a_2d_image(dicom_factory, frames12):
    loaded = load_image(_tomosynthesis(dicom_factory, frames12), frame=3)
    assert loaded.frames == 1 and np.array_equal(loaded.data, frames12[3])
    assert loaded.metadata["frame"] == 3 and loaded.scale == pytest.approx((0.07, 0.08))


def test_a_frame_outside_the_stack_is_refused(dicom_factory, frames12):
    with pytest.raises(InvalidInputError, match="frame 5 is not one of its 5 frames"):
        load_image(_tomosynthesis(dicom_factory, frames12), frame=5)


def test_a_single_film_is_read_as_it_is_whatever_frame_is_asked(dicom_factory, frames12):
    film = load_image(dicom_factory("film.dcm", frames12[0]), frame=2)
    assert np.array_equal(film.data, frames12[0])


def test_a_stack_in_an_opened_folder_still_says_it_is_a_stack(dicom_factory, frames12, tmp_path):
    from napari_pathreview._reader import read_paths

    _tomosynthesis(dicom_factory, frames12, name="exam/IM0001")
    [(data, kwargs, _)] = read_paths(tmp_path / "exam")
    assert data.shape == (5, 24, 32) and kwargs["name"].endswith("[5 frames]")


def test_a_stack_opens_in_napari_with_a_frame_slider(make_napari_viewer, dicom_factory, frames12):
    path = _tomosynthesis(dicom_factory, frames12, SpacingBetweenSlices=1.0)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    assert layer.name == "dbt [5 frames]" and layer.ndim == 3
    assert viewer.dims.nsteps[0] == 5
    viewer.dims.set_current_step(0, 4)
    assert np.array_equal(layer._slice.image.raw, frames12[4])
