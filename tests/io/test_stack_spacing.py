"""A multi-page TIFF stack opens physical in all three axes where its metadata says so: the
frame step from ImageJ's ``spacing`` (in its ``unit``) or OME's ``PhysicalSizeZ``, the pixel
size beside it; grey frames in mm (as a DICOM stack), colour frames in µm (as histology).
Without a stated step the frame axis steps one per frame."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile


@pytest.fixture
def grey() -> np.ndarray:
    ramp = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)
    return np.stack([ramp + 100 * k for k in range(5)])


def _open(viewer, path):
    [layer] = viewer.open(path, plugin="napari-pathreview")
    return layer


def test_an_imagej_stack_takes_its_z_spacing_into_the_napari_layer(
    make_napari_viewer, tmp_path, grey
):
    path = tmp_path / "stack.tif"
    metadata = {"spacing": 2.0, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(path, grey, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=metadata)
    layer = _open(make_napari_viewer(), path)
    assert layer.ndim == 3 and layer.data.shape == (5, 24, 32)
    assert tuple(layer.scale) == pytest.approx((0.002, 0.0005, 0.0005))  # µm → mm
    assert [str(u) for u in layer.units] == ["millimeter"] * 3


def test_an_ome_stack_takes_physical_size_z_in_its_unit_into_the_napari_layer(
    make_napari_viewer, tmp_path, grey
):
    path = tmp_path / "stack.ome.tif"
    metadata = {
        "axes": "ZYX",
        "PhysicalSizeZ": 1.5,
        "PhysicalSizeZUnit": "mm",
        "PhysicalSizeX": 50.0,
        "PhysicalSizeY": 50.0,
    }
    tifffile.imwrite(path, grey, ome=True, metadata=metadata)
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((1.5, 0.05, 0.05))
    assert [str(u) for u in layer.units] == ["millimeter"] * 3


def test_a_colour_imagej_stack_opens_in_micrometres(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    pages = rng.integers(0, 255, (3, 24, 32, 3), dtype=np.uint8)
    path = tmp_path / "zstack.tif"
    metadata = {"spacing": 3.0, "unit": "micron", "axes": "ZYXS"}
    tifffile.imwrite(path, pages, imagej=True, resolution=(1 / 0.25, 1 / 0.25), metadata=metadata)
    layer = _open(make_napari_viewer(), path)
    assert layer.rgb and tuple(layer.scale) == pytest.approx((3.0, 0.25, 0.25))
    assert [str(u) for u in layer.units] == ["micrometer"] * 3


def test_a_stack_without_a_frame_step_steps_one_per_frame_at_its_pixel_size(
    make_napari_viewer, tmp_path, grey
):
    path = tmp_path / "stack.tif"
    metadata = {"unit": "um", "axes": "ZYX"}  # no spacing
    tifffile.imwrite(path, grey, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=metadata)
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((1.0, 0.0005, 0.0005))
    assert [str(u) for u in layer.units] == ["pixel", "millimeter", "millimeter"]


def test_a_large_stack_read_lazily_keeps_its_z_spacing(tmp_path, grey, monkeypatch):
    from napari_pathreview.io import layers_for_path, slides

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1000)  # the stack counts as large
    path = tmp_path / "stack.tif"
    metadata = {"spacing": 2.0, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(path, grey, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=metadata)
    [(data, kwargs, _)] = layers_for_path(path)
    assert kwargs["metadata"]["pathreview"]["lazy"] is True and data.shape == (5, 24, 32)
    assert kwargs["scale"] == pytest.approx((0.002, 0.0005, 0.0005))
