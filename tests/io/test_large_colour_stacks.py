"""A colour stack too large to decode whole (over the eager limit, or pyramidal) opens as a lazy
stack with every frame: frames first (napari's slider), a frame's tiles read only when it is
shown, at the physical scale the file states, a pyramid as levels that are each a lazy stack.
Before, it opened as a slide of its first page and the other frames silently disappeared."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from colour_stacks import write_pyramidal_colour_stack
from napari_pathreview.errors import ImageReadError
from napari_pathreview.io import load_image, slides
from napari_pathreview.io.frames import MultiFrameError
from napari_pathreview.preflight import probe_image


@pytest.fixture
def colour_frames() -> np.ndarray:
    """Four RGB frames of noise, so a frame is known by its pixels."""
    return np.random.default_rng(0).integers(0, 255, (4, 96, 128, 3), dtype=np.uint8)


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test file here counts as larger than the eager-read limit."""
    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)


def _imagej_zstack(path: Path, frames: np.ndarray) -> Path:
    """An ImageJ colour z-stack: 0.25 µm pixels, 3 µm between frames, tiled pages."""
    metadata = {"spacing": 3.0, "unit": "micron", "axes": "ZYXS"}
    resolution = (1 / 0.25, 1 / 0.25)
    tifffile.imwrite(path, frames, imagej=True, resolution=resolution, metadata=metadata)
    return path


def test_a_large_rgb_tiff_stack_opens_in_napari_as_a_lazy_stack_of_every_frame(
    make_napari_viewer, tmp_path, colour_frames, large
):
    path = _imagej_zstack(tmp_path / "zstack.tif", colour_frames)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    assert isinstance(layer.data, da.Array) and layer.data.shape == (4, 96, 128, 3)
    assert layer.rgb and layer.name == "zstack [4 frames]"
    assert layer.metadata["pathreview"]["lazy"] is True
    assert viewer.dims.nsteps[0] == 4
    viewer.dims.set_current_step(0, 2)
    assert np.array_equal(layer._slice.image.raw, colour_frames[2])


def test_a_large_rgb_tiff_stack_keeps_its_z_spacing_and_pixel_size(
    make_napari_viewer, tmp_path, colour_frames, large
):
    path = _imagej_zstack(tmp_path / "zstack.tif", colour_frames)
    [layer] = make_napari_viewer().open(path, plugin="napari-pathreview")
    assert tuple(layer.scale) == pytest.approx((3.0, 0.25, 0.25))
    assert [str(u) for u in layer.units] == ["micrometer"] * 3


def test_each_frame_of_a_large_colour_stack_is_its_own_read(tmp_path, colour_frames, large):
    path = _imagej_zstack(tmp_path / "zstack.tif", colour_frames)
    loaded = load_image(path, frame="all")
    assert loaded.data.chunks[0] == (1, 1, 1, 1)  # showing frame K decodes frame K's tiles only
    assert np.array_equal(np.asarray(loaded.data[3]), colour_frames[3])


def test_a_pyramidal_rgb_stack_opens_as_a_multiscale_of_lazy_stacks(
    make_napari_viewer, tmp_path, colour_frames
):
    path = write_pyramidal_colour_stack(tmp_path / "pyramid.tif", colour_frames)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    assert layer.multiscale and layer.rgb and layer.name == "pyramid [4 frames]"
    assert [level.shape for level in layer.data] == [(4, 96, 128, 3), (4, 48, 64, 3)]
    assert all(isinstance(level, da.Array) for level in layer.data)
    assert tuple(layer.scale) == pytest.approx((1.0, 0.5, 0.5))  # no Z stated: a step a frame
    assert np.array_equal(np.asarray(layer.data[0][1]), colour_frames[1])
    assert np.array_equal(np.asarray(layer.data[1][1]), colour_frames[1, ::2, ::2])


def test_a_chosen_frame_of_a_pyramidal_colour_stack_keeps_its_levels(tmp_path, colour_frames):
    loaded = load_image(
        write_pyramidal_colour_stack(tmp_path / "pyramid.tif", colour_frames), frame=3
    )
    assert loaded.frames == 1 and loaded.modality == "histology" and loaded.um_per_px == 0.5
    assert [level.shape for level in loaded.levels] == [(96, 128, 3), (48, 64, 3)]
    assert np.array_equal(np.asarray(loaded.data), colour_frames[3])


def test_a_large_colour_stack_is_refused_for_a_2d_model_without_a_frame(tmp_path, colour_frames):
    path = write_pyramidal_colour_stack(tmp_path / "pyramid.tif", colour_frames)
    with pytest.raises(MultiFrameError, match="4 frames"):
        load_image(path)


def test_the_header_probe_counts_every_frame_of_a_large_colour_stack(tmp_path, colour_frames):
    probe = probe_image(write_pyramidal_colour_stack(tmp_path / "pyramid.tif", colour_frames))
    assert probe.modality == "histology" and probe.frames == 4


def test_a_16_bit_large_colour_stack_opens_as_rgb_uint8(tmp_path, colour_frames, large):
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, colour_frames.astype(np.uint16) * 257, photometric="rgb")
    loaded = load_image(path, frame="all")
    assert loaded.data.dtype == np.uint8 and loaded.data.shape == (4, 96, 128, 3)
    assert np.array_equal(np.asarray(loaded.data[1]), colour_frames[1])


def test_a_large_colour_stack_of_float_pixels_is_refused_naming_the_file(
    tmp_path, colour_frames, large
):
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, colour_frames.astype(np.float32) / 255, photometric="rgb")
    with pytest.raises(ImageReadError, match="8- or 16-bit") as raised:
        load_image(path, frame="all")
    assert str(path) in str(raised.value) and "8-bit RGB" in str(raised.value)


def test_the_slide_reader_refuses_a_tiff_stack_rather_than_tile_its_first_frame(
    tmp_path, colour_frames
):
    from napari_pathreview.io.wsi import open_slide

    path = write_pyramidal_colour_stack(tmp_path / "pyramid.tif", colour_frames)
    with pytest.raises(MultiFrameError, match="4 frames") as raised:
        open_slide(path)
    assert str(path) in str(raised.value) and "--frame K" in str(raised.value)


def _colour_dicom(colour_dicom_factory, name: str, frames: np.ndarray) -> Path:
    """A colour multi-frame DICOM with 0.1 mm pixels and 2 mm between frames."""
    import pydicom

    path = colour_dicom_factory(name, frames)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing, ds.SpacingBetweenSlices = [0.1, 0.1], 2.0
    ds.save_as(path)
    return path


def test_a_large_rgb_multi_frame_dicom_opens_in_napari_as_a_lazy_stack_at_its_spacing(
    make_napari_viewer, colour_dicom_factory, colour_frames, large
):
    path = _colour_dicom(colour_dicom_factory, "photos.dcm", colour_frames)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    assert isinstance(layer.data, da.Array) and layer.data.chunks[0] == (1, 1, 1, 1)
    assert layer.rgb and layer.name == "photos [4 frames]"
    assert tuple(layer.scale) == pytest.approx((2.0, 0.1, 0.1))
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    viewer.dims.set_current_step(0, 3)
    assert np.array_equal(layer._slice.image.raw, colour_frames[3])


def test_a_chosen_frame_of_a_large_rgb_dicom_is_that_frame(
    colour_dicom_factory, colour_frames, large
):
    loaded = load_image(_colour_dicom(colour_dicom_factory, "photos.dcm", colour_frames), frame=1)
    assert loaded.frames == 1 and loaded.modality == "histology"
    assert np.array_equal(np.asarray(loaded.data), colour_frames[1])


def test_a_truncated_large_rgb_dicom_is_refused_when_opened_naming_it(
    colour_dicom_factory, colour_frames, large
):
    path = _colour_dicom(colour_dicom_factory, "cut.dcm", colour_frames)
    path.write_bytes(path.read_bytes()[:-5000])  # the last frame is lost
    with pytest.raises(ImageReadError, match="frame 3") as raised:
        load_image(path, frame="all")
    assert str(path) in str(raised.value)


def test_the_slide_reader_refuses_a_dicom_stack_rather_than_fail_on_its_shape(
    colour_dicom_factory, colour_frames
):
    from napari_pathreview.io.wsi import open_slide

    path = colour_dicom_factory("photos.dcm", colour_frames)
    with pytest.raises(MultiFrameError, match="4 frames") as raised:
        open_slide(path)
    assert str(path) in str(raised.value)
