"""A ROI covers the same pixels in QuPath, in napari, in masks and in training.

QuPath (GeoJSON) puts pixel i's corner at i, napari its centre: the square QuPath writes as
(0, 0)–(10, 10) is pixels 0..9, which napari draws from −0.5 to 9.5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview._reader import napari_get_reader
from napari_pathreview._writer import write_shapes_geojson
from napari_pathreview.explain.masks import mask_from_shapes
from napari_pathreview.io.geojson import FRAME_KEY, parse_geojson_rois, read_geojson_rois
from napari_pathreview.training.patches import geojson_rois, rois_mask
from napari_pathreview.widgets._session import read_session

QUPATH_SQUARE = {
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
    "properties": {"objectType": "annotation"},
}
NAPARI_SQUARE = np.array([[-0.5, -0.5], [-0.5, 9.5], [9.5, 9.5], [9.5, -0.5]])  # pixels 0..9


def pixels_0_to_9(shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    expected = np.zeros(shape, bool)
    expected[:10, :10] = True
    return expected


def test_qupath_square_covers_exactly_pixels_0_to_9() -> None:
    rois = parse_geojson_rois(QUPATH_SQUARE)
    mask = mask_from_shapes([r.data for r in rois], [r.shape_type for r in rois], (20, 20))
    assert mask.sum() == 100
    np.testing.assert_array_equal(mask, pixels_0_to_9())


def test_qupath_square_trains_on_the_same_100_pixels(tmp_path: Path) -> None:
    rois = geojson_rois(json.dumps(QUPATH_SQUARE), tmp_path, "square")
    np.testing.assert_array_equal(rois_mask(rois, (20, 20), 1.0, "square"), pixels_0_to_9())


def test_qupath_square_at_half_size_covers_the_5_by_5_pixels_that_hold_it(tmp_path: Path) -> None:
    rois = geojson_rois(json.dumps(QUPATH_SQUARE), tmp_path, "square")
    np.testing.assert_array_equal(
        rois_mask(rois, (10, 10), 0.5, "square"), pixels_0_to_9()[::2, ::2]
    )


def test_qupath_square_opens_in_napari_over_pixels_0_to_9(tmp_path: Path) -> None:
    path = tmp_path / "square.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [QUPATH_SQUARE]}))
    ((data, _, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "shapes"
    np.testing.assert_array_equal(np.sort(data[0], axis=0), np.sort(NAPARI_SQUARE, axis=0))


def test_shapes_over_pixels_0_to_9_export_as_the_qupath_square(tmp_path: Path) -> None:
    attributes = {"shape_type": ["rectangle"], "scale": (1.0, 1.0), "translate": (0.0, 0.0)}
    (written,) = write_shapes_geojson(str(tmp_path / "drawn"), [NAPARI_SQUARE], attributes)
    ring = json.loads(Path(written).read_text())["features"][0]["geometry"]["coordinates"][0]
    assert sorted(map(tuple, ring[:-1])) == [(0, 0), (0, 10), (10, 0), (10, 10)]


@pytest.mark.parametrize(
    "frame",
    [
        {"scale": (1.0, 1.0), "translate": (0.0, 0.0)},
        {"scale": (0.25, 0.25), "translate": (100.0, -40.0), "units": ("um", "um")},
    ],
)
def test_napari_shapes_round_trip_through_a_geojson_file_unchanged(
    tmp_path: Path, frame: dict
) -> None:
    ellipse = np.array([[20.0, 30.0], [20.0, 51.0], [33.0, 51.0], [33.0, 30.0]])
    polygon = np.array([[1.25, 2.5], [7.0, 3.0], [4.5, 8.75]])
    shapes = [NAPARI_SQUARE, ellipse, polygon]
    attributes = {"shape_type": ["rectangle", "ellipse", "polygon"], **frame}
    (written,) = write_shapes_geojson(str(tmp_path / "drawn.geojson"), shapes, attributes)
    ((data, kwargs, _),) = napari_get_reader(written)(written)
    assert kwargs["shape_type"] == attributes["shape_type"]
    for original, restored in zip(shapes, data, strict=True):
        np.testing.assert_allclose(restored, original, atol=1e-3)
    assert tuple(kwargs["scale"]) == frame["scale"]
    assert tuple(kwargs["translate"]) == frame["translate"]


def test_geojson_written_before_the_pixel_origin_key_reopens_where_it_was_drawn(
    tmp_path: Path,
) -> None:
    """Our writer's older files hold napari coordinates and carry the frame: kept as they are."""
    ring = [[-0.5, -0.5], [9.5, -0.5], [9.5, 9.5], [-0.5, 9.5], [-0.5, -0.5]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}
    document = {"type": "FeatureCollection", "features": [feature], FRAME_KEY: {"scale": [1, 1]}}
    path = tmp_path / "old.geojson"
    path.write_text(json.dumps(document))
    (roi,) = read_geojson_rois(path)
    np.testing.assert_array_equal(np.sort(roi.data, axis=0), np.sort(NAPARI_SQUARE, axis=0))


def test_session_saved_before_the_pixel_origin_key_reopens_its_roi_in_place(
    tmp_path: Path,
) -> None:
    ring = [[-0.5, -0.5], [9.5, -0.5], [9.5, 9.5], [-0.5, 9.5], [-0.5, -0.5]]
    roi = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}
    session = {
        "format": "napari-pathreview-session",
        "version": 1,
        "layers": [{"type": "roi", "name": "tumour", "geojson": roi}],
    }
    path = tmp_path / "review.session.json"
    path.write_text(json.dumps(session))
    document, _ = read_session(path)
    (restored,) = parse_geojson_rois(document["layers"][0]["geojson"])
    np.testing.assert_array_equal(np.sort(restored.data, axis=0), np.sort(NAPARI_SQUARE, axis=0))
