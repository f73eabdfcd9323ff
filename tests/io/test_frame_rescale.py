"""Per-frame rescale of an enhanced multi-frame DICOM: each frame through its own rescale slope
and intercept (per-frame functional groups' PixelValueTransformationSequence), else the shared
groups', else the top level's, before its window; the viewer's stack and
``load_image(frame=K)`` follow the one rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.io import layers_for_path, load_image

WINDOW = (3000, 4000)


@pytest.fixture
def ramp() -> np.ndarray:
    """A 12-bit horizontal ramp 0..4080 (8×256)."""
    return np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (8, 1))


def _rescale_groups(*rescales: tuple[float, float] | None):
    """Functional-group items, each with a PixelValueTransformationSequence (None: none)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    groups = []
    for rescale in rescales:
        group = Dataset()
        if rescale is not None:
            item = Dataset()
            item.RescaleSlope, item.RescaleIntercept = rescale
            item.RescaleType = "US"
            group.PixelValueTransformationSequence = Sequence([item])
        groups.append(group)
    return Sequence(groups)


def _stack(dicom_factory, frames, per_frame=None, shared=None, top=None, window=None) -> Path:
    import pydicom

    path = dicom_factory("dbt.dcm", frames, rescale=top, window=window)
    ds = pydicom.dcmread(path)
    if per_frame is not None:
        ds.PerFrameFunctionalGroupsSequence = _rescale_groups(*per_frame)
    if shared is not None:
        ds.SharedFunctionalGroupsSequence = _rescale_groups(shared)
    ds.save_as(path)
    return path


def test_each_frame_is_rescaled_by_its_own_slope_and_intercept(dicom_factory, ramp):
    path = _stack(dicom_factory, np.stack([ramp, ramp]), per_frame=[(1, 0), (2, 100)], top=(5, 0))
    [(data, kwargs, _)] = layers_for_path(path)
    assert np.array_equal(data[0], ramp)
    assert np.array_equal(data[1], ramp * 2 + 100)
    assert kwargs["metadata"]["pathreview"]["rescale_from"] == "per-frame"


def test_a_frame_without_its_own_rescale_takes_the_shared_one_before_the_top_level(
    dicom_factory, ramp
):
    frames = np.stack([ramp, ramp])
    path = _stack(dicom_factory, frames, per_frame=[(2, 100), None], shared=(3, 0), top=(5, 0))
    [(data, _, _)] = layers_for_path(path)
    assert np.array_equal(data[0], ramp * 2 + 100)
    assert np.array_equal(data[1], ramp * 3)


def test_the_shared_rescale_applies_to_every_frame_when_none_has_its_own(dicom_factory, ramp):
    path = _stack(dicom_factory, np.stack([ramp, ramp]), shared=(3, 0), top=(5, 0))
    [(data, kwargs, _)] = layers_for_path(path)
    assert all(np.array_equal(frame, ramp * 3) for frame in data)
    assert kwargs["metadata"]["pathreview"]["rescale_from"] == "shared"


def test_each_frame_is_rescaled_before_it_is_windowed(dicom_factory, ramp):
    """Frame K windowed after its own rescale reads as a single film with that rescale at the
    top level and the same window: the case every viewer agrees on."""
    path = _stack(dicom_factory, np.stack([ramp, ramp]), per_frame=[(1, 0), (2, 0)], window=WINDOW)
    [(data, _, _)] = layers_for_path(path)
    for k, rescale in enumerate([(1, 0), (2, 0)]):
        film = dicom_factory(f"film_{k}.dcm", ramp, rescale=rescale, window=WINDOW)
        assert np.array_equal(data[k], load_image(film).data)
    assert not np.array_equal(data[0], data[1])


def test_load_image_reads_frame_k_through_frame_k_s_rescale_as_napari_shows_it(
    make_napari_viewer, dicom_factory, ramp
):
    path = _stack(dicom_factory, np.stack([ramp, ramp]), per_frame=[(1, 0), (2, 100)])
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    viewer.dims.set_current_step(0, 1)
    chosen = load_image(path, frame=1)
    assert np.array_equal(chosen.data, layer._slice.image.raw)
    assert np.array_equal(chosen.data, ramp * 2 + 100)
