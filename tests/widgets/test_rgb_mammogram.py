"""A mammogram saved as RGB (R = G = B) is a mammogram to the docks, whichever reader opened it.

napari's own reader makes an RGB layer with no PathReview metadata; the docks used to take any
RGB layer for histology, and the plugin's reader took any colour file for histology too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.viewer


def _rgb_film(sample_data: Path, folder: Path) -> Path:
    """MIAS film mdb028 as an 8-bit RGB PNG, the way a converted film often arrives."""
    grey = np.asarray(Image.open(sample_data / "mias" / "mdb028.pgm"))
    path = folder / "mdb028.png"
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path)
    return path


def _offered(widget: Any) -> list[str]:
    return [ref for ref in widget.model_combo.choices if ref]


def test_an_rgb_film_opened_by_napari_s_reader_is_offered_mammogram_models(
    make_napari_viewer: Any,
    open_widget: Any,
    sample_data: Path,
    tmp_path: Path,
    histology_model: str,
    mammogram_model: str,
) -> None:
    viewer = make_napari_viewer()
    [layer] = viewer.open(_rgb_film(sample_data, tmp_path), plugin="napari")
    assert layer.rgb and "pathreview" not in layer.metadata  # not the plugin's reader
    widget = open_widget(viewer, "Analyze")
    assert _offered(widget) == [mammogram_model]


def test_both_readers_give_an_rgb_film_the_same_modality(
    make_napari_viewer: Any,
    open_widget: Any,
    sample_data: Path,
    tmp_path: Path,
    histology_model: str,
    mammogram_model: str,
) -> None:
    viewer = make_napari_viewer()
    path = _rgb_film(sample_data, tmp_path)
    [own] = viewer.open(path, plugin="napari-pathreview")
    [napari_s] = viewer.open(path, plugin="napari")
    widget = open_widget(viewer, "Analyze")
    assert own.metadata["pathreview"]["modality"] == "mammogram"
    for layer in (own, napari_s):
        widget.image_combo.value = layer.name
        assert _offered(widget) == [mammogram_model], layer.name


def test_an_h_and_e_image_opened_by_napari_s_reader_stays_histology(
    make_napari_viewer: Any,
    open_widget: Any,
    sample_data: Path,
    histology_model: str,
    mammogram_model: str,
) -> None:
    viewer = make_napari_viewer()
    viewer.open(sample_data / "breakhis" / "SOB_M_DC-14-2523-40-010.png", plugin="napari")
    assert _offered(open_widget(viewer, "Analyze")) == [histology_model]
