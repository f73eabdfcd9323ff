"""Each napari.yaml contribution as napari calls it: File ▸ Open, Save Selected Layers, samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.errors import LayerExportError

pytestmark = pytest.mark.viewer


def test_saving_a_3d_labels_layer_as_geojson_says_why_it_cannot(
    make_napari_viewer, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    stack = np.zeros((3, 32, 32), dtype=np.uint8)
    stack[1, 5:15, 5:15] = 2
    viewer.add_labels(stack, name="nuclei stack")
    with pytest.raises(LayerExportError, match=r"nuclei stack.*\(3, 32, 32\).*one 2-D plane"):
        viewer.layers.save(str(tmp_path / "nuclei.geojson"), selected=True)
    assert not (tmp_path / "nuclei.geojson").exists()


def test_a_labels_stack_of_one_plane_saves_as_that_plane(
    make_napari_viewer, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    stack = np.zeros((1, 32, 32), dtype=np.uint8)
    stack[0, 5:15, 5:15] = 2
    viewer.add_labels(stack, name="one plane")
    written = viewer.layers.save(str(tmp_path / "plane.geojson"), selected=True)
    (back,) = viewer.open(written[0], plugin=None)
    assert back.features["label"].tolist() == [2]
