"""GeoJSON ROIs: [x, y] on disk, (row, col) in napari; shapes survive a round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.io import Roi, read_geojson_rois, write_geojson_rois
from napari_pathreview.io.geojson import read_geojson
from napari_pathreview.io.labels import label_image_to_rois


def _qupath_feature(coords, geometry="Polygon", name="Tumor") -> dict:
    return {
        "type": "Feature",
        "id": "a1",
        "geometry": {"type": geometry, "coordinates": coords},
        "properties": {
            "objectType": "annotation",
            "classification": {"name": name, "color": [200, 0, 0]},
            "isLocked": False,
        },
    }


def test_reads_qupath_polygon_swapping_x_and_y(tmp_path: Path) -> None:
    ring = [[10, 100], [50, 100], [50, 120], [10, 120], [10, 100]]  # [x, y], closed
    path = tmp_path / "a.geojson"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [_qupath_feature([ring])]})
    )
    (roi,) = read_geojson_rois(path)
    assert roi.shape_type == "polygon"
    # (row, col), open, and half a pixel up-left: QuPath's x=10 is the left EDGE of pixel 10,
    # whose centre napari puts at 10
    assert roi.data.tolist() == [[99.5, 9.5], [99.5, 49.5], [119.5, 49.5], [119.5, 9.5]]
    assert (
        roi.properties["classification"] == "Tumor" and roi.properties["objectType"] == "annotation"
    )


def test_reads_multipolygon_as_separate_polygons_with_holes(tmp_path: Path) -> None:
    outer = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    other = [[20, 20], [30, 20], [30, 30], [20, 20]]
    path = tmp_path / "multi.geojson"
    path.write_text(json.dumps(_qupath_feature([[outer, hole], [other]], "MultiPolygon")))
    rois = read_geojson_rois(path)
    assert len(rois) == 2 and len(rois[0].holes) == 1 and not rois[1].holes


def test_reads_a_bare_feature_array(tmp_path: Path) -> None:
    ring = [[0, 0], [5, 0], [5, 5], [0, 0]]
    path = tmp_path / "array.json"
    path.write_text(json.dumps([_qupath_feature([ring]), _qupath_feature([ring], name="Stroma")]))
    assert [r.properties["classification"] for r in read_geojson_rois(path)] == ["Tumor", "Stroma"]


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "Feature"',
        '{"type": "Topology"}',
        '[{"type": "Feature"}]',
        '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a"]]]}}',
    ],
)
def test_malformed_geojson_raises(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(ImageReadError):
        read_geojson_rois(path)


@pytest.mark.parametrize(
    "frame",
    [{"scale": [0, 1]}, {"scale": ["a", 1]}, {"scale": [1, 1], "translate": [1]}, "0.5"],
    ids=["zero scale", "text scale", "one offset", "not a mapping"],
)
def test_a_malformed_layer_frame_is_refused_naming_the_file(tmp_path: Path, frame) -> None:
    document = {"type": "FeatureCollection", "pathreview_frame": frame,
                "features": [_qupath_feature([[[0, 0], [4, 0], [4, 4], [0, 0]]])]}  # fmt: skip
    path = tmp_path / "framed.geojson"
    path.write_text(json.dumps(document))
    with pytest.raises(ImageReadError, match="framed.geojson.*pathreview_frame"):
        read_geojson(path)


BARE_GEOMETRIES = {  # what the review store accepts as a review's ROI (README: a Point)
    "Point": ({"type": "Point", "coordinates": [120, 80]}, 0),
    "MultiPoint": ({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, 0),
    "Polygon": ({"type": "Polygon", "coordinates": [[[0, 0], [9, 0], [9, 9], [0, 0]]]}, 1),
}


@pytest.mark.parametrize(("geometry", "areas"), BARE_GEOMETRIES.values(), ids=BARE_GEOMETRIES)
def test_every_bare_geometry_the_review_store_accepts_parses(geometry, areas, caplog) -> None:
    """A review saved with the README's Point ROI used to stop lesion retraining from reviews
    and the roi_disagreement queue with "not GeoJSON (type 'Point')"; a point has no area, so
    it is skipped with a warning, as inside a Feature."""
    from napari_pathreview.io import parse_geojson_rois
    from napari_pathreview.review.validation import normalise_geojson

    stored = json.loads(normalise_geojson(geometry))
    rois = parse_geojson_rois(stored, "case17.png")
    assert len(rois) == areas
    assert areas or "skipping" in caplog.text


def test_round_trip_keeps_every_shape_type(tmp_path: Path) -> None:
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    box = np.array([[-10, -20], [-10, 20], [10, 20], [10, -20]], float)
    rois = [
        Roi(np.array([[1.5, 2.0], [30, 4], [25, 40]]), "polygon", {"classification": "Tumor"}),
        Roi(
            np.array([[10, 10], [10, 50], [40, 50], [40, 10]], float), "rectangle", {"name": "box"}
        ),
        Roi(box @ rot.T + [100, 200], "ellipse", {"score": 0.5}),
        Roi(np.array([[0, 0], [5, 7], [9, 3]], float), "path", {}),
    ]
    path = write_geojson_rois(tmp_path / "rois.geojson", rois)
    back = read_geojson_rois(path)
    assert [r.shape_type for r in back] == ["polygon", "rectangle", "ellipse", "path"]
    for original, restored in zip(rois, back, strict=True):
        np.testing.assert_allclose(restored.data, original.data, atol=1e-3)
    assert back[0].properties["classification"] == "Tumor"
    assert back[2].properties["score"] == 0.5


def test_written_file_is_qupath_shaped(tmp_path: Path) -> None:
    roi = Roi(np.array([[10.0, 1.0], [10, 5], [20, 5]]), "polygon", {"classification": "Tumor"})
    document = json.loads(write_geojson_rois(tmp_path / "q.geojson", [roi]).read_text())
    feature = document["features"][0]
    assert document["type"] == "FeatureCollection"
    assert feature["geometry"]["coordinates"][0][0] == [1.5, 10.5]  # [x, y], pixel corners
    assert feature["geometry"]["coordinates"][0][-1] == feature["geometry"]["coordinates"][0][0]
    assert feature["properties"]["classification"] == {"name": "Tumor"}
    assert feature["properties"]["objectType"] == "annotation"


def test_writing_a_bad_roi_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        write_geojson_rois(tmp_path / "x.geojson", [Roi(np.zeros((1, 2)))])
    with pytest.raises(InvalidInputError, match="shape type"):
        write_geojson_rois(tmp_path / "x.geojson", [Roi(np.zeros((3, 2)), "blob")])


def test_labels_become_polygons_with_holes() -> None:
    from skimage.draw import polygon2mask

    labels = np.zeros((60, 60), dtype=np.int32)
    labels[5:45, 5:45] = 1
    labels[15:25, 15:25] = 0  # a hole
    labels[50:58, 50:58] = 2
    rois = label_image_to_rois(labels, {1: "Tumor"})
    assert sorted(r.properties["label"] for r in rois) == [1, 2]
    tumour = next(r for r in rois if r.properties["label"] == 1)
    assert tumour.properties["classification"] == "Tumor" and len(tumour.holes) == 1
    filled = polygon2mask(labels.shape, tumour.data) & ~polygon2mask(labels.shape, tumour.holes[0])
    truth = labels == 1
    assert (filled & truth).sum() / (filled | truth).sum() > 0.85


def test_label_image_must_be_2d_integers() -> None:
    with pytest.raises(InvalidInputError):
        label_image_to_rois(np.zeros((2, 3, 4), dtype=np.int32))
    with pytest.raises(InvalidInputError):
        label_image_to_rois(np.zeros((4, 4), dtype=float))
