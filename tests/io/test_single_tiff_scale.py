"""A single grey TIFF that states its pixel size opens at it, by the rule a stack's frames
follow: grey in mm (as a DICOM mammogram), colour in µm (as histology). The size comes from
the resolution tags with an inch or centimetre unit, ImageJ's ``unit``, or OME's
``PhysicalSizeX``; a file that states none, or resolution tags without a unit, opens in
pixels. Prediction reads the pixel size napari shows."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile


@pytest.fixture
def film() -> np.ndarray:
    """A 12-bit grey ramp, 24×32."""
    return (np.arange(24 * 32, dtype=np.uint16) * 5).reshape(24, 32)


def _open(viewer, path):
    [layer] = viewer.open(path, plugin="napari-pathreview")
    return layer


def _units(layer) -> list[str]:
    return [str(u) for u in layer.units]


def test_a_grey_tiff_with_resolution_in_centimetres_opens_in_millimetres(
    make_napari_viewer, tmp_path, film
):
    path = tmp_path / "film.tif"
    tifffile.imwrite(path, film, resolution=(200, 200), resolutionunit="CENTIMETER")  # 50 µm
    layer = _open(make_napari_viewer(), path)
    assert not layer.rgb and layer.data.shape == (24, 32)
    assert tuple(layer.scale) == pytest.approx((0.05, 0.05))
    assert _units(layer) == ["millimeter"] * 2


def test_a_grey_tiff_with_resolution_in_inches_opens_in_millimetres(
    make_napari_viewer, tmp_path, film
):
    path = tmp_path / "film.tif"
    tifffile.imwrite(path, film, resolution=(254, 254), resolutionunit="INCH")  # 100 µm
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((0.1, 0.1))
    assert _units(layer) == ["millimeter"] * 2


def test_a_grey_ome_tiff_opens_at_its_physical_size_in_its_unit(make_napari_viewer, tmp_path, film):
    path = tmp_path / "film.ome.tif"
    metadata = {"axes": "YX", "PhysicalSizeX": 70.0, "PhysicalSizeY": 70.0}  # µm by default
    tifffile.imwrite(path, film, ome=True, metadata=metadata)
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((0.07, 0.07))
    assert _units(layer) == ["millimeter"] * 2


def test_a_grey_imagej_tiff_opens_at_its_resolution_in_its_unit(make_napari_viewer, tmp_path, film):
    path = tmp_path / "film.tif"
    tifffile.imwrite(
        path, film, imagej=True, resolution=(1 / 85.0, 1 / 85.0), metadata={"unit": "micron"}
    )
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((0.085, 0.085))
    assert _units(layer) == ["millimeter"] * 2


def test_a_grey_tiff_whose_resolution_has_no_unit_stays_in_pixels(
    make_napari_viewer, tmp_path, film
):
    path = tmp_path / "film.tif"
    tifffile.imwrite(path, film, resolution=(200, 200), resolutionunit="NONE")
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == (1.0, 1.0)
    assert _units(layer) == ["pixel"] * 2
    assert "pixel_spacing_mm" not in layer.metadata["pathreview"]


def test_a_grey_tiff_stating_no_size_stays_in_pixels(tmp_path, film):
    from napari_pathreview.io import load_image

    path = tmp_path / "film.tif"
    tifffile.imwrite(path, film)
    loaded = load_image(path)
    assert loaded.scale == (1.0, 1.0) and loaded.scale_unit == "pixel"


def test_load_image_and_prediction_read_the_pixel_size_napari_shows(
    make_napari_viewer, tmp_path, film
):
    from napari_pathreview.inference.preprocess import decode
    from napari_pathreview.io import load_image

    path = tmp_path / "film.tif"
    tifffile.imwrite(path, film, resolution=(200, 200), resolutionunit="CENTIMETER")
    layer = _open(make_napari_viewer(), path)
    loaded = load_image(path)
    assert loaded.modality == "mammogram" and loaded.scale_unit == "mm"
    assert loaded.metadata["pixel_spacing_mm"] == pytest.approx([0.05, 0.05])
    assert "um_per_px" not in loaded.metadata  # one unit per image: grey states mm
    assert decode(path).um_per_px == pytest.approx(layer.scale[-1] * 1000.0)  # 50 µm


def test_a_colour_tiff_keeps_its_stated_size_in_micrometres(make_napari_viewer, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    path = tmp_path / "he.tif"
    tifffile.imwrite(path, rgb, resolution=(40_000, 40_000), resolutionunit="CENTIMETER")
    layer = _open(make_napari_viewer(), path)
    assert layer.rgb and tuple(layer.scale) == pytest.approx((0.25, 0.25))
    assert _units(layer) == ["micrometer"] * 2


def test_a_large_grey_tiff_read_lazily_keeps_its_pixel_size(tmp_path, film, monkeypatch):
    from napari_pathreview.io import layers_for_path, slides

    monkeypatch.setattr(slides, "EAGER_MAX_BYTES", 100)  # the film counts as large
    path = tmp_path / "film.tif"
    tifffile.imwrite(path, film, resolution=(200, 200), resolutionunit="CENTIMETER")
    [(_, kwargs, _)] = layers_for_path(path)
    assert kwargs["metadata"]["pathreview"]["lazy"]
    assert kwargs["scale"] == pytest.approx((0.05, 0.05)) and kwargs["units"] == ("mm", "mm")


def _mias_film(path, size: int, **resolution):
    """A grey film named like a mini-MIAS one (``mdbNNN``), stating ``resolution`` if given."""
    film = np.random.default_rng(1).integers(20, 230, (size, size), dtype=np.uint8)
    tifffile.imwrite(path, film, **resolution)
    return path


def test_a_mias_named_tiff_that_states_its_size_opens_and_is_predicted_at_that_size(
    make_napari_viewer, tmp_path
):
    from napari_pathreview.inference.preprocess import decode

    path = _mias_film(
        tmp_path / "mdb001.tif", 1024, resolution=(200, 200), resolutionunit="CENTIMETER"
    )  # 50 µm, not the 200 µm the mini-MIAS name documents
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((0.05, 0.05))
    assert _units(layer) == ["millimeter"] * 2
    assert decode(path).um_per_px == pytest.approx(50.0)  # the size napari shows


def test_a_mias_named_tiff_stating_one_millimetre_per_pixel_keeps_it(make_napari_viewer, tmp_path):
    """A stated 1 mm/px is a scale of (1, 1): it is still the file's, not 'no size'."""
    from napari_pathreview.inference.preprocess import decode

    path = _mias_film(
        tmp_path / "mdb001.tif", 1024, resolution=(10, 10), resolutionunit="CENTIMETER"
    )
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == (1.0, 1.0)
    assert _units(layer) == ["millimeter"] * 2
    assert layer.metadata["pathreview"]["pixel_spacing_mm"] == [1.0, 1.0]
    assert decode(path).um_per_px == pytest.approx(1000.0)


def test_a_mias_named_tiff_stating_no_size_opens_and_is_predicted_at_the_documented_size(
    make_napari_viewer, tmp_path
):
    from napari_pathreview.inference.preprocess import decode

    path = _mias_film(tmp_path / "mdb001.tif", 1024)
    layer = _open(make_napari_viewer(), path)
    assert tuple(layer.scale) == pytest.approx((0.2, 0.2))
    assert decode(path).um_per_px == pytest.approx(200.0)
