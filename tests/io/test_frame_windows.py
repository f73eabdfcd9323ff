"""Per-frame windows of a multi-frame DICOM: each frame through its own VOI window (per-frame
functional groups), else the shared groups', else the top level's; the viewer's stack and
``load_image(frame=K)`` follow the one rule. The reference is a single film written with the
same window at the top level, the case every viewer agrees on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.io import layers_for_path, load_image

LOW, HIGH, SHARED, TOP = (1024, 512), (3072, 1024), (2048, 256), (500, 4000)


@pytest.fixture
def ramp() -> np.ndarray:
    """A 12-bit horizontal ramp 0..4080 (8×256): a window shows as where it clips."""
    return np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (8, 1))


def _voi_groups(*windows: tuple[float, float] | None):
    """Functional-group items, each with a FrameVOILUTSequence of its window (None: no VOI)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    groups = []
    for window in windows:
        group = Dataset()
        if window is not None:
            voi = Dataset()
            voi.WindowCenter, voi.WindowWidth = window
            group.FrameVOILUTSequence = Sequence([voi])
        groups.append(group)
    return Sequence(groups)


def _stack(dicom_factory, frames: np.ndarray, per_frame=None, shared=None, top=None) -> Path:
    import pydicom

    path = dicom_factory("dbt.dcm", frames, window=top)
    ds = pydicom.dcmread(path)
    if per_frame is not None:
        ds.PerFrameFunctionalGroupsSequence = _voi_groups(*per_frame)
    if shared is not None:
        ds.SharedFunctionalGroupsSequence = _voi_groups(shared)
    ds.save_as(path)
    return path


def _film(dicom_factory, pixels: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``pixels`` as a single film windowed at the top level: what the window should give."""
    return load_image(
        dicom_factory(f"film_{window[0]}_{window[1]}.dcm", pixels, window=window)
    ).data


def test_each_frame_is_windowed_by_its_own_window(dicom_factory, ramp):
    path = _stack(dicom_factory, np.stack([ramp, ramp]), per_frame=[LOW, HIGH], top=TOP)
    [(data, kwargs, _)] = layers_for_path(path)
    assert not np.array_equal(data[0], data[1])  # same pixels, two windows
    assert np.array_equal(data[0], _film(dicom_factory, ramp, LOW))
    assert np.array_equal(data[1], _film(dicom_factory, ramp, HIGH))
    assert kwargs["metadata"]["pathreview"]["window_from"] == "per-frame"


def test_a_frame_without_its_own_window_takes_the_shared_one_before_the_top_level(
    dicom_factory, ramp
):
    frames = np.stack([ramp, ramp])
    path = _stack(dicom_factory, frames, per_frame=[LOW, None], shared=SHARED, top=TOP)
    [(data, _, _)] = layers_for_path(path)
    assert np.array_equal(data[0], _film(dicom_factory, ramp, LOW))
    assert np.array_equal(data[1], _film(dicom_factory, ramp, SHARED))


def test_the_shared_window_applies_to_every_frame_when_none_has_its_own(dicom_factory, ramp):
    path = _stack(dicom_factory, np.stack([ramp, ramp, ramp]), shared=SHARED, top=TOP)
    [(data, kwargs, _)] = layers_for_path(path)
    expected = _film(dicom_factory, ramp, SHARED)
    assert all(np.array_equal(frame, expected) for frame in data)
    facts = kwargs["metadata"]["pathreview"]
    assert facts["window_from"] == "shared"
    assert (facts["window_center"], facts["window_width"]) == SHARED


def test_the_top_level_window_still_applies_when_no_group_states_one(dicom_factory, ramp):
    path = _stack(dicom_factory, np.stack([ramp, ramp]), top=HIGH)
    [(data, _, _)] = layers_for_path(path)
    assert np.array_equal(data[1], _film(dicom_factory, ramp, HIGH))


def test_load_image_reads_frame_k_through_frame_k_s_window_as_napari_shows_it(
    make_napari_viewer, dicom_factory, ramp
):
    path = _stack(dicom_factory, np.stack([ramp, ramp]), per_frame=[LOW, HIGH])
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-pathreview")
    viewer.dims.set_current_step(0, 1)
    chosen = load_image(path, frame=1)
    assert np.array_equal(chosen.data, layer._slice.image.raw)
    assert np.array_equal(chosen.data, _film(dicom_factory, ramp, HIGH))
    assert (chosen.metadata["window_center"], chosen.metadata["window_width"]) == HIGH
