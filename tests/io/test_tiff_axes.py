"""Every axis layout tifffile writes for 2-D to 4-D colour and grey data opens, small and large
alike, by one rule (io.tiff_axes): Y×X planes, S samples, C of 3 planes without S as the R, G, B
planes of one image, and every other axis (C with S included) as frames. Before, an OME-TIFF of
colour planes (axes CYXS, from a (3, H, W, 3) array) crashed inside the reader with "axes don't
match array", and grey channels other than three were cut to their first plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io import load_image, slides

PLUGIN = "napari-pathreview"
H, W = 32, 48


def _noise(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(len(shape)).integers(0, top, shape, dtype=dtype)


def _colour_frames(array: np.ndarray) -> np.ndarray:
    """Colour pixels (…×Y×X×S): every leading plane a frame, in file order."""
    return array.reshape(-1, H, W, 3)


def _rgb_planes(array: np.ndarray) -> np.ndarray:
    """(…×3×Y×X): the three planes are R, G and B of one image per leading plane."""
    return np.moveaxis(array, -3, -1).reshape(-1, H, W, 3)


def _grey_frames(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1, H, W)


# name: (array shape, dtype, tifffile options, axes tifffile names, frames, the frames it holds)
LAYOUTS: dict[str, tuple] = {
    "rgb_planes_of_colour_CYXS": ((3, H, W, 3), np.uint8, {}, "CYXS", 3, _colour_frames),
    "photometric_rgb_CYXS": (
        (3, H, W, 3),
        np.uint8,
        {"photometric": "rgb"},
        "CYXS",
        3,
        _colour_frames,
    ),
    "four_colour_planes_CYXS": ((4, H, W, 3), np.uint8, {}, "CYXS", 4, _colour_frames),
    "zstack_of_colour_planes_ZCYXS": ((2, 3, H, W, 3), np.uint8, {}, "ZCYXS", 6, _colour_frames),
    "rgb_YXS": ((H, W, 3), np.uint8, {}, "YXS", 1, _colour_frames),
    "planar_rgb_CYX": ((3, H, W), np.uint8, {}, "CYX", 1, _rgb_planes),
    "planar_rgb_stack_ZCYX": ((2, 3, H, W), np.uint8, {}, "ZCYX", 2, _rgb_planes),
    "planar_rgb_TZCYX": ((2, 2, 3, H, W), np.uint8, {}, "TZCYX", 4, _rgb_planes),
    "grey_YX": ((H, W), np.uint16, {}, "YX", 1, _grey_frames),
    "four_grey_channels_CYX": ((4, H, W), np.uint16, {}, "CYX", 4, _grey_frames),
    "five_grey_channels_CYX": ((5, H, W), np.uint8, {}, "CYX", 5, _grey_frames),
    "grey_channels_over_z_ZCYX": ((2, 2, H, W), np.uint16, {}, "ZCYX", 4, _grey_frames),
}


def _ome(path: Path, shape: tuple[int, ...], dtype: type, options: dict) -> np.ndarray:
    """An OME-TIFF written by tifffile without axes metadata (it names the axes itself)."""
    array = _noise(shape, dtype)
    tifffile.imwrite(path, array, ome=True, **options)
    return array


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_an_ome_tiff_layout_reads_the_same_small_and_large(tmp_path, monkeypatch, layout):
    shape, dtype, options, axes, frames, reads = layout
    path = tmp_path / "image.ome.tif"
    array = _ome(path, shape, dtype, options)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes  # the layout under test is what tifffile wrote
    small = load_image(path, frame="all")
    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)
    large = load_image(path, frame="all")
    expected = reads(array) if frames > 1 else reads(array)[0]
    assert small.frames == large.frames == frames
    assert np.array_equal(small.data, expected)
    assert np.array_equal(np.asarray(large.data), expected)


@pytest.mark.viewer
def test_an_ome_tiff_of_colour_planes_opens_in_napari_as_a_colour_stack(
    make_napari_viewer, tmp_path
):
    path = tmp_path / "planes.ome.tif"
    array = _ome(path, (3, H, W, 3), np.uint8, {})
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.rgb and layer.data.shape == (3, H, W, 3)
    assert np.array_equal(np.asarray(layer.data), array)
    assert layer.metadata["pathreview"]["axes"] == "CYXS"


def test_an_analysis_of_an_ome_colour_stack_asks_which_frame(tmp_path):
    path = tmp_path / "planes.ome.tif"
    array = _ome(path, (3, H, W, 3), np.uint8, {})
    with pytest.raises(ImageReadError, match="3 frames"):
        load_image(path)  # a 2-D model reads one frame and will not guess which
    assert np.array_equal(load_image(path, frame=2).data, array[2])


def _five_samples(path: Path) -> None:
    tifffile.imwrite(path, _noise((H, W, 5)), photometric="minisblack", planarconfig="contig")


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_a_tiff_of_more_than_four_samples_a_pixel_is_refused_naming_file_and_axes(
    tmp_path, monkeypatch, large
):
    path = tmp_path / "spectral.tif"
    _five_samples(path)
    if large:
        monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)
    with pytest.raises(ImageReadError, match=r"spectral\.tif: a TIFF of axes YXS .* 5 samples"):
        load_image(path)


@pytest.mark.viewer
def test_a_refused_tiff_opens_no_layer_in_napari_and_says_why(make_napari_viewer, tmp_path):
    from napari.utils.notifications import notification_manager

    path = tmp_path / "spectral.tif"
    _five_samples(path)
    viewer = make_napari_viewer()
    start = len(notification_manager.records)
    assert viewer.open(path, plugin=PLUGIN) == []
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert any("spectral.tif" in m and "axes YXS" in m for m in messages)
