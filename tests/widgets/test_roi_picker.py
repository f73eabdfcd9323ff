"""Which ROI layers the Analyze dock offers for an image (`_common.analysis_roi_names`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.viewer

SQUARE = {
    "type": "Feature",
    "properties": {"classification": {"name": "Tumor"}},
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]]},
}


def _image(viewer: Any, path: Path) -> Any:
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(path)
    [layer] = viewer.open(path, plugin="napari-pathreview")
    return layer


def _geojson(viewer: Any, path: Path) -> Any:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [SQUARE]}))
    [layer] = viewer.open(path, plugin="napari-pathreview")
    return layer


def test_a_geojson_of_another_name_opened_beside_the_image_is_offered(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    image = _image(viewer, tmp_path / "tumour.png")
    roi = _geojson(viewer, tmp_path / "annotations.geojson")  # QuPath's export, renamed
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = image.name
    assert roi.name in widget.roi_combo.choices


def test_a_geojson_named_for_another_open_image_is_not_offered(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    first = _image(viewer, tmp_path / "case_a.png")
    second = _image(viewer, tmp_path / "case_b.png")
    roi = _geojson(viewer, tmp_path / "case_a.geojson")
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = first.name
    assert roi.name in widget.roi_combo.choices
    widget.image_combo.value = second.name
    assert roi.name not in widget.roi_combo.choices
