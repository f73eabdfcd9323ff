"""A GeoJSON exported by QuPath (pixel coordinates, no frame) lands on the image it belongs to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview._reader import napari_get_reader
from napari_pathreview.io import write_geojson_rois
from napari_pathreview.io.geojson import Roi

UM_PER_PX = 0.5


@pytest.fixture
def notifications():
    """Notifications napari records while the test runs."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    yield lambda: [str(n.message) for n in notification_manager.records[start:]]


def write_um_tiff(path: Path, height: int = 120, width: int = 160) -> Path:
    """An RGB TIFF whose resolution tags say 0.5 µm per pixel (20,000 pixels per cm)."""
    import tifffile

    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    per_cm = 1e4 / UM_PER_PX
    tifffile.imwrite(path, rgb, resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    return path


def write_qupath_geojson(path: Path, ring_xy: list[list[float]]) -> Path:
    """What QuPath's *Export objects as GeoJSON* writes: full-resolution [x, y] pixels."""
    feature = {
        "type": "Feature",
        "id": "6b0c3a1e-0000-4000-8000-000000000001",
        "geometry": {"type": "Polygon", "coordinates": [[*ring_xy, ring_xy[0]]]},
        "properties": {
            "objectType": "annotation",
            "classification": {"name": "Tumor", "color": [200, 0, 0]},
        },
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


SQUARE_XY = [[20.0, 10.0], [60.0, 10.0], [60.0, 50.0], [20.0, 50.0]]


def open_with_reader(path: Path) -> list[tuple]:
    return napari_get_reader(str(path))(str(path))


@pytest.mark.parametrize(
    "name", ["case7.geojson", "case7.tif.geojson", "case7_annotations.geojson", "CASE7.json"]
)
def test_qupath_geojson_takes_the_scale_of_the_image_named_like_it(
    tmp_path: Path, name: str
) -> None:
    write_um_tiff(tmp_path / "case7.tif")
    ((data, kwargs, kind),) = open_with_reader(write_qupath_geojson(tmp_path / name, SQUARE_XY))
    assert kind == "shapes"
    assert tuple(kwargs["scale"]) == (UM_PER_PX, UM_PER_PX)
    assert tuple(kwargs["units"]) == ("um", "um")
    # still image pixels, in napari's convention (pixel centres on integers)
    assert data[0].tolist() == [[9.5, 19.5], [9.5, 59.5], [49.5, 59.5], [49.5, 19.5]]
    facts = kwargs["metadata"]["pathreview"]
    assert facts["frame_from"] == "image" and facts["image"] == "case7"


def test_qupath_geojson_without_an_image_beside_it_stays_in_pixels_and_says_so(
    tmp_path: Path, notifications
) -> None:
    write_um_tiff(tmp_path / "other.tif")
    ((_, kwargs, _),) = open_with_reader(write_qupath_geojson(tmp_path / "lost.geojson", SQUARE_XY))
    assert tuple(kwargs.get("scale", (1.0, 1.0))) == (1.0, 1.0)
    assert kwargs["metadata"]["pathreview"]["frame_from"] == "pixels"
    (message,) = notifications()
    assert "lost.geojson" in message and "scale 1" in message


def test_an_unreadable_image_of_the_same_name_leaves_pixels_and_names_it(
    tmp_path: Path, notifications
) -> None:
    (tmp_path / "case7.tif").write_bytes(b"II*\x00" + b"\xff" * 64)
    ((_, kwargs, _),) = open_with_reader(
        write_qupath_geojson(tmp_path / "case7.geojson", SQUARE_XY)
    )
    assert "scale" not in kwargs
    (message,) = notifications()
    assert "case7.geojson" in message and "case7.tif" in message


def test_our_own_frame_wins_over_the_image_beside_it(tmp_path: Path) -> None:
    write_um_tiff(tmp_path / "case7.tif")
    frame = {"scale": (2.0, 2.0), "translate": (5.0, 7.0), "units": ("um", "um")}
    roi = Roi(np.array([[10.0, 20.0], [50.0, 60.0], [50.0, 20.0]]))
    path = write_geojson_rois(tmp_path / "case7.geojson", [roi], frame)
    ((_, kwargs, _),) = open_with_reader(path)
    assert tuple(kwargs["scale"]) == (2.0, 2.0) and tuple(kwargs["translate"]) == (5.0, 7.0)
    assert kwargs["metadata"]["pathreview"]["frame_from"] == "file"


def test_rois_beyond_the_image_are_placed_but_questioned(tmp_path: Path, notifications) -> None:
    write_um_tiff(tmp_path / "case7.tif", height=120, width=160)
    far = [[20.0, 10.0], [900.0, 10.0], [900.0, 50.0]]
    ((_, kwargs, _),) = open_with_reader(write_qupath_geojson(tmp_path / "case7.geojson", far))
    assert tuple(kwargs["scale"]) == (UM_PER_PX, UM_PER_PX)
    (message,) = notifications()
    assert "x=900" in message and "160×120" in message
