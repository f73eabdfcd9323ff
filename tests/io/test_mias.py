"""MIAS Info.txt: bottom-left origin, missing centres, several findings per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathreview.errors import ImageReadError
from napari_pathreview.explain.masks import mask_from_mias, mask_from_shapes
from napari_pathreview.io import (
    find_mias_annotations,
    mias_image_label,
    mias_refnum,
    read_mias_info,
)
from napari_pathreview.io.layers import mias_roi_layer
from napari_pathreview.io.mias import MiasAnnotation

INFO = """REFNUM BG CLASS SEVERITY X Y RADIUS
mdb001 G CIRC B 535 425 197
mdb003 D NORM\x20
mdb144 F MISC B 233 994 29
mdb144 F MISC M 313 540 27
mdb216 D CALC M\x20\x20
"""


@pytest.fixture
def info_txt(tmp_path: Path) -> Path:
    path = tmp_path / "Info.txt"
    path.write_text(INFO)
    return path


def test_reads_rows_with_bottom_left_origin(info_txt: Path) -> None:
    first = read_mias_info(info_txt)[0]
    assert (first.refnum, first.tissue, first.abnormality, first.severity) == (
        "mdb001",
        "G",
        "CIRC",
        "B",
    )
    assert (first.x, first.y, first.radius) == (535, 425, 197)
    assert (first.row, first.col) == (1024 - 425, 535)


def test_normal_and_widespread_calcification_have_no_centre(info_txt: Path) -> None:
    rows = {a.refnum: a for a in read_mias_info(info_txt)}
    assert rows["mdb003"].severity is None and rows["mdb003"].row is None
    assert rows["mdb216"].severity == "M" and not rows["mdb216"].has_roi


def test_image_label_is_malignant_if_any_finding_is(info_txt: Path) -> None:
    rows = read_mias_info(info_txt)
    by_image = {ref: [a for a in rows if a.refnum == ref] for ref in {a.refnum for a in rows}}
    assert mias_image_label(by_image["mdb144"]) == "malignant"
    assert mias_image_label(by_image["mdb001"]) == "benign"
    assert mias_image_label(by_image["mdb003"]) == "normal"


def test_malformed_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "Info.txt"
    path.write_text("REFNUM BG CLASS SEVERITY X Y RADIUS\nmdb001 G BLOB B 1 2 3\n")
    with pytest.raises(ImageReadError, match=":2:"):
        read_mias_info(path)


@pytest.mark.parametrize(
    ("row", "given"), [("mdb001 G CIRC B 535", "x"), ("mdb001 G CIRC B 535 425", "x, y")]
)
def test_a_row_with_part_of_a_circle_is_refused_naming_the_line(
    tmp_path: Path, row: str, given: str
) -> None:
    path = tmp_path / "Info.txt"
    path.write_text(f"mdb003 D NORM\n{row}\n")
    needs = f"Info.txt:2: a circle needs x, y and radius, the row gives only {given}:"
    with pytest.raises(ImageReadError, match=needs):
        read_mias_info(path)  # it would have been a lesion with no ROI, silently


def test_empty_info_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "Info.txt"
    path.write_text("")
    with pytest.raises(ImageReadError, match="no MIAS annotation"):
        read_mias_info(path)


def test_finds_annotations_beside_the_image(info_txt: Path) -> None:
    rows = find_mias_annotations(info_txt.parent / "mdb144.pgm")
    assert [a.severity for a in rows] == ["B", "M"]
    assert find_mias_annotations(info_txt.parent / "mdb999.pgm") is None
    assert mias_refnum("MDB028.PNG") == "mdb028" and mias_refnum("x.png") is None


def test_reads_the_labels_csv_form(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "file,tissue,abnormality,severity,x,y,radius\nmdb028.pgm,F,CIRC,M,338,314,56\n"
        "mdb003.pgm,D,NORM,,,,\n"
    )
    rows = read_mias_info(path)
    assert (rows[0].refnum, rows[0].row, rows[0].col) == ("mdb028", 710, 338)
    assert rows[1].abnormality == "NORM" and rows[1].x is None


def test_full_shared_info_has_322_images(shared_data: Path) -> None:
    rows = read_mias_info(shared_data / "mias" / "Info.txt")
    assert len({a.refnum for a in rows}) == 322
    mdb028 = [a for a in rows if a.refnum == "mdb028"]
    assert [(a.abnormality, a.severity, a.row, a.col, a.radius) for a in mdb028] == [
        ("CIRC", "M", 710, 338, 56)
    ]


def test_a_mias_film_opens_at_its_documented_0_2_mm_per_pixel(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from napari_pathreview.io import layers_for_path

    film = tmp_path / "mdb028.pgm"
    Image.fromarray(np.zeros((1024, 1024), np.uint8)).save(film)
    other = tmp_path / "scan.pgm"
    Image.fromarray(np.zeros((1024, 1024), np.uint8)).save(other)
    cropped = tmp_path / "mdb029.pgm"
    Image.fromarray(np.zeros((512, 600), np.uint8)).save(cropped)
    (data, kwargs, _kind), *_ = layers_for_path(film)
    assert tuple(kwargs["scale"]) == (0.2, 0.2) and tuple(kwargs["units"]) == ("mm", "mm")
    for unknown in (other, cropped):  # not a 1024² MIAS film: no size is guessed
        (_data, kwargs, _kind), *_ = layers_for_path(unknown)
        assert tuple(kwargs.get("scale", (1.0, 1.0))) == (1.0, 1.0) and "units" not in kwargs


def test_mias_circle_on_a_downscaled_film_is_drawn_over_its_mask() -> None:
    """The Shapes circle napari shows covers the pixels the IoU mask holds (256² copy)."""
    annotations = [MiasAnnotation("mdb023", "G", "CIRC", "M", 538, 681, 29)]
    data, kwargs, _ = mias_roi_layer(annotations, "mdb023 ROI", (256, 256))
    shown = mask_from_shapes(data, kwargs["shape_type"], (256, 256))
    np.testing.assert_array_equal(shown, mask_from_mias(annotations, (256, 256)))


def test_mias_circle_on_the_full_film_is_centred_on_its_pixel() -> None:
    annotations = [MiasAnnotation("mdb023", "G", "CIRC", "M", 538, 681, 29)]
    data, _, _ = mias_roi_layer(annotations, "mdb023 ROI", (1024, 1024))
    np.testing.assert_allclose(data[0].mean(axis=0), [1024 - 681, 538])
