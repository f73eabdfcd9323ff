"""Bad ROI and image files: refused naming the file, never scored as a perfect match.

Each file is generated here. A ROI with NaN/inf/absurd coordinates, a deeply nested
GeoJSON, a MIAS row with an infinite radius, or a region that misses the image must raise
the project's error naming the file, not a raw exception and not an IoU of 1.000.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.errors import ImageReadError, InvalidInputError, PathReviewError
from napari_pathreview.explain.evaluate import roi_mask_from_geojson, roi_mask_from_mias
from napari_pathreview.explain.masks import mask_from_shapes
from napari_pathreview.io import load_image, read_geojson_rois, read_mias_info


def _polygon(coords: list) -> str:
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
               "coordinates": [coords]}}  # fmt: skip
    return json.dumps({"type": "FeatureCollection", "features": [feature]})


SQUARE = [[10, 10], [40, 10], [40, 40], [10, 40], [10, 10]]
GEOJSON_CASES = [
    ("nan.geojson", _polygon([[10, 10], [float("nan"), 10], [40, 40], [10, 10]]), "NaN or inf"),
    ("inf.geojson", _polygon([[10, 10], [float("inf"), 10], [40, 40], [10, 10]]), "NaN or inf"),
    ("absurd.geojson", _polygon([[10, 10], [1e12, 10], [40, 40], [10, 10]]), "beyond any image"),
    ("deep.geojson", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("strings.geojson", _polygon([["a", "b"], [1, 2], [3, 4]]), "bad coordinates"),
    ("binary.geojson", None, "cannot read GeoJSON"),
]


@pytest.mark.parametrize(("name", "text", "says"), GEOJSON_CASES, ids=[c[0] for c in GEOJSON_CASES])
def test_bad_geojson_roi_is_refused_naming_the_file(tmp_path: Path, name, text, says) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    else:
        path.write_text(text)
    with pytest.raises(ImageReadError) as caught:
        read_geojson_rois(path)
    assert name in str(caught.value) and says in str(caught.value)


def test_nested_geometry_collections_are_refused_naming_the_file(tmp_path: Path) -> None:
    depth = 20_000
    inner = json.dumps({"type": "Polygon", "coordinates": [SQUARE]})
    nested = '{"type": "GeometryCollection", "geometries": [' * depth + inner + "]}" * depth
    path = tmp_path / "collections.geojson"
    path.write_text('{"type": "Feature", "properties": {}, "geometry": ' + nested + "}")
    with pytest.raises(ImageReadError, match="collections.geojson"):
        read_geojson_rois(path)


@pytest.mark.parametrize(
    "coords",
    [[[500, 500], [600, 500], [600, 600], [500, 600], [500, 500]],
     [[10.2, 10.2], [10.4, 10.2], [10.4, 10.4], [10.2, 10.2]]],
    ids=["outside-the-image", "sub-pixel"],
)  # fmt: skip
def test_roi_empty_after_rasterising_is_refused_not_scored(tmp_path: Path, coords) -> None:
    path = tmp_path / "roi.geojson"
    path.write_text(_polygon(coords))
    with pytest.raises(InvalidInputError, match=r"roi\.geojson: the ROI covers no pixel"):
        roi_mask_from_geojson(path, (64, 64))


def test_a_two_vertex_polygon_is_refused_naming_the_file_and_feature(tmp_path: Path) -> None:
    """It used to say only "a polygon needs at least 3 vertices", naming no file."""
    square = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}
    two = [[[10, 10], [40, 40]]]
    line = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": two}}
    path = tmp_path / "two.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [square, line]}))
    with pytest.raises(InvalidInputError) as refused:
        roi_mask_from_geojson(path, (64, 64))
    assert str(refused.value).startswith(f"{path} feature 1: a polygon needs at least 3 vertices")


def test_a_two_vertex_hole_is_refused_naming_the_file_and_feature(tmp_path: Path) -> None:
    path = tmp_path / "hole.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [SQUARE, [[15, 15], [20, 20]]]}))
    with pytest.raises(InvalidInputError) as refused:
        roi_mask_from_geojson(path, (64, 64))
    assert str(refused.value).startswith(f"{path} feature 0: a hole needs at least 3 vertices")


def test_valid_roi_still_rasterises(tmp_path: Path) -> None:
    path = tmp_path / "roi.geojson"
    path.write_text(_polygon(SQUARE))
    assert roi_mask_from_geojson(path, (64, 64)).sum() > 500


def test_non_finite_shape_vertices_are_refused() -> None:
    square = np.array([[0, 0], [0, np.nan], [5, 5], [5, 0]], float)
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        mask_from_shapes([square], "polygon", (16, 16))


MIAS_ROWS = [
    ("mdb001 G CIRC B 535 425 inf", "radius 'inf'"),
    ("mdb001 G CIRC B 535 425 nan", "radius 'nan'"),
    ("mdb001 G CIRC B 535 425 -5", "radius '-5'"),
    ("mdb001 G CIRC B 535 425 0", "radius 0 must be positive"),
    ("mdb001 G CIRC B 1e9 425 30", "x '1e9'"),
    ("mdb001 G CIRC B -1 425 30", "x '-1'"),
    ("mdb001 G CIRC B 535 abc 30", "y 'abc' is not a number"),
]


@pytest.mark.parametrize(("row", "says"), MIAS_ROWS, ids=[r for r, _ in MIAS_ROWS])
def test_bad_mias_row_is_refused_naming_file_and_line(tmp_path: Path, row, says) -> None:
    info = tmp_path / "Info.txt"
    info.write_text("REFNUM BG CLASS SEVERITY X Y RADIUS\nmdb002 G NORM\n" + row + "\n")
    with pytest.raises(ImageReadError) as caught:
        read_mias_info(info)
    assert "Info.txt:3" in str(caught.value) and says in str(caught.value)


def test_mias_circle_outside_a_small_image_is_refused(tmp_path: Path) -> None:
    info = tmp_path / "Info.txt"
    info.write_text("mdb001 G CIRC B 1000 20 3\n")  # bottom-left corner, 3 px: misses 4×4
    with pytest.raises(InvalidInputError, match="Info.txt"):
        roi_mask_from_mias(info, tmp_path / "mdb001.png", (4, 4))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _huge_png_header() -> bytes:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 16, 0, 0, 0, 0)  # 16-bit grey
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)


IMAGE_CASES = [
    ("six.tif", b"II*\x00\x08\x00"),
    ("header.tif", b"MM\x00*"),
    ("huge16.png", _huge_png_header()),
    ("garbage.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
    ("empty.jpg", b""),
]


@pytest.mark.parametrize(("name", "data"), IMAGE_CASES, ids=[n for n, _ in IMAGE_CASES])
def test_corrupt_image_is_a_project_error_naming_it(tmp_path: Path, name, data) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(PathReviewError, match=name.replace(".", r"\.")):
        load_image(path)


def test_tiff_with_forged_size_tags_is_refused_at_open(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "forged.tif"
    pixels = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb")
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        places = [(t.valueoffset, t.dtype) for t in (tags["ImageWidth"], tags["ImageLength"])]
    for offset, dtype in places:  # claim 4096² while the tile table covers 256²
        struct.pack_into("<H" if dtype == 3 else "<I", raw, offset, 4096)
    path.write_bytes(bytes(raw))
    with pytest.raises(PathReviewError, match=r"forged\.tif.*tile"):
        load_image(path)
