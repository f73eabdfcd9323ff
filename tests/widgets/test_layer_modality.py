"""The modality of a colour layer another reader made, judged from its pixels once per data.

napari's own reader gives no modality, so the pickers judge it from the pixels (R = G = B is a
film saved as colour); for a lazy slide level that read went to disk on every picker refresh.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest

from napari_pathreview.widgets._common import layer_modality

pytestmark = pytest.mark.viewer


def _counted(pixels: np.ndarray, reads: list[int]) -> Any:
    """``pixels`` as a lazy dask array (one chunk, like a slide level) that counts its reads."""

    def load() -> np.ndarray:
        reads.append(1)
        return pixels

    return da.from_delayed(dask.delayed(load)(), pixels.shape, pixels.dtype)


def _grey_film() -> np.ndarray:
    ramp = np.tile(np.arange(64, dtype=np.uint8)[:, None], (1, 64))
    return np.repeat(ramp[..., None], 3, axis=2)


def _colour_tile() -> np.ndarray:
    tile = _grey_film()
    tile[..., 0] = 200
    return tile


def test_a_colour_layer_s_pixels_are_judged_once_per_data(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer()
    reads: list[int] = []
    layer = viewer.add_image(_counted(_grey_film(), reads), rgb=True, name="film")
    assert layer_modality(layer) == "mammogram"
    before = len(reads)
    assert layer_modality(layer) == "mammogram"
    assert len(reads) == before


def test_a_layer_whose_data_changed_is_judged_again(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer()
    layer = viewer.add_image(_grey_film(), rgb=True, name="tile")
    assert layer_modality(layer) == "mammogram"
    layer.data = _colour_tile()
    assert layer_modality(layer) == "histology"
    layer.data = _grey_film()
    assert layer_modality(layer) == "mammogram"


def test_the_model_picker_s_refresh_does_not_read_the_layer_again(
    make_napari_viewer: Any, open_widget: Any
) -> None:
    viewer = make_napari_viewer()
    reads: list[int] = []
    viewer.add_image(_counted(_colour_tile(), reads), rgb=True, name="tile")
    widget = open_widget(viewer, "Analyze")
    before = len(reads)
    widget.reset_choices()
    assert len(reads) == before
