"""napari reader: claims only its formats, never raises, builds the right layers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_pathreview._reader import NULL_LAYER, napari_get_reader


@pytest.fixture
def notifications():
    """Notifications napari records while the test runs."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    yield lambda: [str(n.message) for n in notification_manager.records[start:]]


@pytest.mark.parametrize("name", ["notes.txt", "table.csv", "model.safetensors", "scan.nii.gz", ""])
def test_get_reader_returns_none_for_unsupported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name:
        path.write_text("x")
    assert napari_get_reader(str(path)) is None


def test_get_reader_returns_none_for_plain_json_and_mixed_lists(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 3}))
    (tmp_path / "a.png").write_bytes(b"")
    assert napari_get_reader(str(tmp_path / "config.json")) is None
    assert napari_get_reader([str(tmp_path / "a.png"), str(tmp_path / "config.json")]) is None
    assert napari_get_reader(12345) is None  # type: ignore[arg-type]
    assert napari_get_reader([]) is None


@pytest.mark.parametrize(
    "name", ["a.png", "b.JPG", "c.tiff", "d.svs", "e.pgm", "f.dcm", "g.geojson", "Info.txt"]
)
def test_get_reader_claims_supported_names(tmp_path: Path, name: str) -> None:
    assert callable(napari_get_reader(str(tmp_path / name)))


@pytest.mark.parametrize(
    "key",
    [
        "truncated_png",
        "empty_png",
        "garbage_pgm",
        "garbage_tif",
        "garbage_geojson",
        "empty_dcm",
        "dicom_without_pixels",
    ],
)
def test_unreadable_file_gives_a_notification_and_no_layer(bad_files, notifications, key) -> None:
    path = bad_files[key]
    reader = napari_get_reader(str(path))
    assert reader is not None
    assert reader(str(path)) == NULL_LAYER
    messages = notifications()
    assert len(messages) == 1 and path.name in messages[0]


def test_one_bad_file_does_not_stop_the_others(bad_files, tmp_path, notifications) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(good)
    paths = [str(bad_files["garbage_pgm"]), str(good)]
    layers = napari_get_reader(paths)(paths)
    assert [layer[2] for layer in layers] == ["image"] and len(notifications()) == 1


def test_histology_png_gives_rgb_layer_with_breakhis_metadata(shared_data: Path) -> None:
    path = shared_data / "breakhis" / "SOB_M_DC-14-2523-40-010.png"
    ((data, kwargs, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "image" and kwargs["rgb"] and data.shape == (460, 700, 3)
    facts = kwargs["metadata"]["pathreview"]
    assert facts["modality"] == "histology" and facts["source_path"] == str(path.resolve())
    assert (facts["label"], facts["subtype"], facts["magnification"], facts["patient_id"]) == (
        "malignant",
        "DC",
        40,
        "14-2523",
    )


def test_mias_image_beside_info_adds_roi_ellipse(shared_data: Path) -> None:
    path = shared_data / "mias" / "mdb028.pgm"
    (image, image_kw, image_kind), (shapes, shapes_kw, shapes_kind) = napari_get_reader(str(path))(
        str(path)
    )
    assert image_kind == "image" and image.shape == (1024, 1024) and not image_kw["rgb"]
    low, high = image_kw["contrast_limits"]
    assert 0 <= low < high <= 255
    assert image_kw["metadata"]["pathreview"]["label"] == "malignant"
    assert shapes_kind == "shapes" and shapes_kw["shape_type"] == ["ellipse"]
    centre = shapes[0].mean(axis=0)
    np.testing.assert_allclose(centre, [1024 - 314, 338])  # row = 1024 - y, col = x
    assert np.ptp(shapes[0][:, 0]) == 2 * 56
    assert shapes_kw["features"]["class"] == ["CIRC"] and shapes_kw["features"]["severity"] == ["M"]
    assert shapes_kw["features"]["tissue"] == ["F"]


def test_mias_image_with_several_findings_gets_one_ellipse_each(shared_data, tmp_path) -> None:
    shutil.copy(shared_data / "mias" / "mdb226.pgm", tmp_path)
    shutil.copy(shared_data / "mias" / "Info.txt", tmp_path)
    path = tmp_path / "mdb226.pgm"
    layers = napari_get_reader(str(path))(str(path))
    assert len(layers[1][0]) == 3 and layers[1][1]["features"]["class"] == ["CALC"] * 3


def test_mias_image_without_info_has_no_roi_layer(shared_data, tmp_path) -> None:
    shutil.copy(shared_data / "mias" / "mdb028.pgm", tmp_path)
    path = tmp_path / "mdb028.pgm"
    layers = napari_get_reader(str(path))(str(path))
    assert [layer[2] for layer in layers] == ["image"]
    assert layers[0][1]["metadata"]["pathreview"]["refnum"] == "mdb028"


def test_downscaled_mias_image_gets_rescaled_roi(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(tmp_path / "mdb028.png")
    (tmp_path / "Info.txt").write_text("mdb028 F CIRC M 338 314 56\n")
    layers = napari_get_reader(str(tmp_path / "mdb028.png"))(str(tmp_path / "mdb028.png"))
    # the centre of film pixel (710, 338) on the 4× smaller copy: pixel centres scale
    centre = [(1024 - 314 + 0.5) / 4 - 0.5, (338 + 0.5) / 4 - 0.5]
    np.testing.assert_allclose(layers[1][0][0].mean(axis=0), centre)


def test_info_txt_alone_gives_roi_layers_for_images_beside_it(shared_data: Path) -> None:
    path = shared_data / "mias" / "Info.txt"
    layers = napari_get_reader(str(path))(str(path))
    names = {layer[1]["name"] for layer in layers}
    assert "mdb028 ROI" in names and "mdb003 ROI" not in names  # normal: nothing to draw
    assert all(kind == "shapes" for _, _, kind in layers)


def test_info_txt_without_images_gives_one_layer_of_all_rois(tmp_path: Path) -> None:
    (tmp_path / "Info.txt").write_text("mdb001 G CIRC B 535 425 197\nmdb002 G CIRC B 522 280 69\n")
    (layer,) = napari_get_reader(str(tmp_path / "Info.txt"))(str(tmp_path / "Info.txt"))
    assert len(layer[0]) == 2 and layer[1]["features"]["refnum"] == ["mdb001", "mdb002"]


def test_geojson_gives_shapes_in_row_col_order(tmp_path: Path) -> None:
    feature = {
        "type": "Feature",
        "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": [[[1, 10], [5, 10], [5, 20], [1, 10]]]},
    }
    path = tmp_path / "roi.geojson"
    path.write_text(json.dumps(feature))
    ((data, kwargs, kind),) = napari_get_reader(str(path))(str(path))
    # (row, col), napari's pixel centres: QuPath's x=1 is the left edge of pixel 1
    assert kind == "shapes" and data[0].tolist() == [[9.5, 0.5], [9.5, 4.5], [19.5, 4.5]]
    assert kwargs["features"]["classification"] == ["Tumor"]


def test_pyramid_gives_multiscale_lazy_levels(sample_data: Path) -> None:
    import dask.array as da

    path = sample_data / "slides" / "he_pyramid.tif"
    ((levels, kwargs, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert [level.shape for level in levels] == [(1024, 1024, 3), (512, 512, 3), (256, 256, 3)]
    assert all(isinstance(level, da.Array) for level in levels)


def test_dicom_gives_grayscale_layer_with_mm_scale(dicom_factory, ramp12) -> None:
    path = dicom_factory("mammo.dcm", ramp12, photometric="MONOCHROME1")
    ((data, kwargs, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "image" and data.shape == ramp12.shape and kwargs["colormap"] == "gray"
    assert kwargs["scale"] == pytest.approx((0.07, 0.08))
    facts = kwargs["metadata"]["pathreview"]
    assert (facts["laterality"], facts["view"], facts["photometric"]) == ("R", "CC", "MONOCHROME1")


def test_layer_metadata_is_json_serialisable(sample_data: Path, dicom_factory, ramp12) -> None:
    paths = [
        sample_data / relative
        for relative in (
            "mias/mdb028.pgm",
            "slides/he_pyramid.tif",
            "breakhis/SOB_B_F-14-9133-40-001.png",
        )
    ]
    paths.append(dicom_factory("tags.dcm", ramp12, window=(2000, 1000)))
    for path in paths:
        for _, kwargs, _ in napari_get_reader(str(path))(str(path)):
            json.dumps(kwargs["metadata"]["pathreview"])


def test_mias_metadata_summarises_class_and_worst_severity(shared_data: Path) -> None:
    path = shared_data / "mias" / "mdb144.pgm"
    facts = napari_get_reader(str(path))(str(path))[0][1]["metadata"]["pathreview"]
    assert facts["abnormality"] == "MISC" and facts["severity"] == "M"
    assert facts["severities"] == ["B", "M"] and facts["patient_id"] == "72"
