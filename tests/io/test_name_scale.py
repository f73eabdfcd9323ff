"""A file named like a dataset's images opens, is predicted and is analysed at one pixel size:
the one its dataset documents, scaled to the width the file holds (a resized copy shows the
same tissue), and its mini-MIAS circles land on the lesion at that scale."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from napari_pathreview.inference.preprocess import decode
from napari_pathreview.io.layers import layers_for_path
from napari_pathreview.widgets._scale import pixel_size_um

DEMO = "demo/histology/SOB_B_A-14-22549CD-40-007.jpg"  # 40X (0.492 µm/px at 700 px), 350 px
DEMO_FILM = "demo/mammogram/mdb028.png"  # mini-MIAS mdb028 area-downscaled 1024² → 256²
FILM = "mdb028.png"  # the full film, in mias_full
MDB028 = "mdb028 F CIRC M 338 314 56\n"  # its Info.txt row: centre x 338, y 314, radius 56


def _file(which: str, sample_data: Path, shared_data: Path) -> Path:
    return sample_data / which if which.startswith("demo/") else shared_data / "mias_full" / which


@pytest.mark.parametrize(
    ("which", "um_per_px", "unit"),
    [(DEMO, 0.984, "um"), (DEMO_FILM, 800.0, "mm"), (FILM, 200.0, "mm")],
)
def test_the_layer_predict_and_the_dock_take_one_pixel_size_from_the_file_name(
    sample_data: Path, shared_data: Path, which: str, um_per_px: float, unit: str
) -> None:
    path = _file(which, sample_data, shared_data)
    (_data, kwargs, _kind), *_ = layers_for_path(path)
    per_unit = 1000.0 if unit == "mm" else 1.0  # the layer's scale: µm for slides, mm for films
    assert tuple(kwargs["scale"]) == pytest.approx((um_per_px / per_unit,) * 2)
    assert tuple(kwargs["units"]) == (unit, unit)
    assert decode(path).um_per_px == pytest.approx(um_per_px)  # predict resamples from it
    facts = kwargs["metadata"]["pathreview"]
    assert pixel_size_um(facts) == pytest.approx(um_per_px)  # the Analyze dock's, from the layer
    assert facts["um_per_px_source"] == "file name"


def test_a_large_grey_tiff_named_like_a_mias_film_opens_lazily_at_the_name_s_size(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import tifffile

    import napari_pathreview.io.slides as slides

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 1024)  # a 256² film counts as large
    path = tmp_path / "mdb028.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(20, 230, (256, 256), np.uint8))
    (_data, kwargs, _kind), *_ = layers_for_path(path)
    assert kwargs["metadata"]["pathreview"]["lazy"]
    assert tuple(kwargs["scale"]) == pytest.approx((0.8, 0.8)) and kwargs["units"] == ("mm", "mm")


def test_a_dicom_film_named_like_a_mias_one_without_spacing_opens_at_the_name_s_size(
    dicom_factory: Any,
) -> None:
    film = np.random.default_rng(0).integers(20, 230, (256, 256), np.uint8)
    path = dicom_factory("mdb028.dcm", film, spacing=None)
    (_data, kwargs, _kind), *_ = layers_for_path(path)
    assert tuple(kwargs["scale"]) == pytest.approx((0.8, 0.8)) and kwargs["units"] == ("mm", "mm")
    assert decode(path).um_per_px == pytest.approx(800.0)


def test_a_breakhis_named_image_of_other_proportions_gets_no_size(tmp_path: Path) -> None:
    """A crop is not a copy of the capture: its field of view is unknown, so nothing is guessed."""
    path = tmp_path / "SOB_B_A-14-22549CD-40-007.png"
    Image.fromarray(np.full((300, 350, 3), 180, np.uint8)).save(path)
    (_data, kwargs, _kind), *_ = layers_for_path(path)
    assert tuple(kwargs.get("scale", (1.0, 1.0))) == (1.0, 1.0) and "units" not in kwargs
    assert decode(path).um_per_px is None


def _film_beside_info(folder: Path, film: Path) -> Path:
    folder.mkdir()
    (folder / "Info.txt").write_text(MDB028, encoding="utf-8")
    return Path(shutil.copy(film, folder / film.name))


def _lesion(viewer: Any, path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """The circle's centre in world mm from the film's top-left edge, in the film's pixels,
    and the film layer, as napari shows them."""
    image, circle = viewer.open(path, plugin="napari-pathreview")
    centre = np.asarray(circle.data_to_world(circle.data[0].mean(axis=0)))
    edge = np.asarray(image.data_to_world((-0.5, -0.5)))  # its top-left pixel's outer corner
    return centre - edge, np.asarray(image.world_to_data(centre)), image


@pytest.mark.viewer
def test_a_mias_circle_lands_on_its_lesion_on_the_full_film_and_its_256_copy(
    make_napari_viewer: Any, sample_data: Path, shared_data: Path, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    full = _film_beside_info(tmp_path / "full", shared_data / "mias_full" / FILM)
    demo = _film_beside_info(tmp_path / "demo", sample_data / DEMO_FILM)
    at_full, pixel_full, film = _lesion(viewer, full)
    at_demo, pixel_demo, copy = _lesion(viewer, demo)
    assert tuple(copy.scale) == pytest.approx((0.8, 0.8))
    np.testing.assert_allclose(at_full, [(1024 - 314 + 0.5) * 0.2, (338 + 0.5) * 0.2])
    np.testing.assert_allclose(at_demo, at_full, atol=1e-9)  # the same place on the breast
    # and the same tissue: the copy's pixel there is the mean of the film's 4×4 block holding it
    row, col = np.floor(pixel_demo + 0.5).astype(int)
    block = np.asarray(film.data)[4 * row : 4 * row + 4, 4 * col : 4 * col + 4]
    assert np.all(np.floor(pixel_full + 0.5) // 4 == (row, col))
    assert abs(int(np.asarray(copy.data)[row, col]) - float(block.mean())) <= 1.0


def test_info_txt_puts_its_circles_on_a_256_copy_as_opening_the_film_does(
    sample_data: Path, tmp_path: Path
) -> None:
    film = _film_beside_info(tmp_path / "demo", sample_data / DEMO_FILM)
    _image, (on_film, film_kwargs, _kind) = layers_for_path(film)
    ((from_info, info_kwargs, _kind),) = layers_for_path(film.parent / "Info.txt")
    np.testing.assert_allclose(from_info[0], on_film[0])
    assert tuple(info_kwargs["scale"]) == tuple(film_kwargs["scale"]) == pytest.approx((0.8, 0.8))
    assert info_kwargs["units"] == film_kwargs["units"] == ("mm", "mm")
