"""The plugin in a real napari viewer (under Xvfb): samples, File ▸ Open, saving ROIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathreview._sample_data import SAMPLES, sample_path

pytestmark = pytest.mark.viewer
PLUGIN = "napari-pathreview"


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_each_sample_file_opens_like_a_user_opens_it(make_napari_viewer, key: str) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open(sample_path(key), plugin=PLUGIN)
    image = layers[0]
    facts = image.metadata["pathreview"]
    assert facts["source_path"] == str(sample_path(key).resolve())
    if key == "mias_mammogram":
        assert [type(layer).__name__ for layer in layers] == ["Image", "Shapes"]
        assert not image.rgb and image.data.shape == (1024, 1024)
        assert facts["label"] == "malignant" and layers[1].shape_type == ["ellipse"]
        assert layers[1].features["class"].tolist() == ["CIRC"]
    else:
        assert image.rgb and facts["modality"] == "histology"
    if key == "pyramidal_tiff":
        assert image.multiscale and len(image.data) == 3
    if key.startswith("breakhis"):
        assert image.data.shape == (460, 700, 3)
        assert facts["label"] == key.split("_")[1]


def test_every_sample_menu_entry_adds_layers(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    for key, relative in sorted(SAMPLES.items()):
        before = len(viewer.layers)
        viewer.open_sample(PLUGIN, key)
        assert len(viewer.layers) > before, key
        facts = viewer.layers[before].metadata["pathreview"]
        assert facts["source_path"].endswith(relative.split("/")[-1])
    assert [layer.name for layer in viewer.layers if type(layer).__name__ == "Shapes"] == [
        "mdb028 ROI"
    ]


def test_info_txt_is_routed_to_the_plugin_without_naming_it(
    make_napari_viewer, sample_data
) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open(sample_data / "mias" / "Info.txt", plugin=None)  # as File ▸ Open does
    assert [layer.name for layer in layers] == ["mdb028 ROI"]
    assert layers[0].features["severity"].tolist() == ["M"]


def test_garbage_file_opens_no_layer_and_notifies(make_napari_viewer, tmp_path: Path) -> None:
    from napari.utils.notifications import notification_manager

    bad = tmp_path / "mdb999.pgm"
    bad.write_bytes(b"\x00garbage" * 32)
    viewer = make_napari_viewer()
    start = len(notification_manager.records)
    assert viewer.open(bad, plugin=PLUGIN) == []
    assert len(viewer.layers) == 0
    assert any("mdb999.pgm" in str(n.message) for n in notification_manager.records[start:])


def test_shared_data_opens_in_viewer(make_napari_viewer, shared_data: Path) -> None:
    viewer = make_napari_viewer()
    viewer.open(shared_data / "mias_full" / "mdb002.png", plugin=PLUGIN)
    viewer.open(shared_data / "he_reference" / "torchstain_target.png", plugin=PLUGIN)
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Shapes", "Image"]
    assert viewer.layers[2].data.shape == (441, 587, 3)


def test_shapes_saved_as_geojson_reopen_identically(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    shapes = viewer.add_shapes(
        [
            np.array([[10, 20], [10, 80], [50, 60]], float),
            np.array([[100, 100], [100, 140], [130, 140], [130, 100]], float),
            np.array([[200, 10], [200, 50], [220, 50], [220, 10]], float),
        ],
        shape_type=["polygon", "rectangle", "ellipse"],
        features={"classification": ["Tumor", "Stroma", "Tumor"]},
        name="rois",
    )
    written = viewer.layers.save(str(tmp_path / "rois.geojson"), selected=False, plugin=PLUGIN)
    assert written == [str(tmp_path / "rois.geojson")]
    coordinates = json.loads(Path(written[0]).read_text())["features"][0]["geometry"][
        "coordinates"
    ][0]
    assert coordinates[0] == [20.5, 10.5]  # [x, y] for QuPath, whose pixel i starts at i
    (back,) = viewer.open(written[0], plugin=PLUGIN)
    assert back.shape_type == shapes.shape_type
    for original, restored in zip(shapes.data, back.data, strict=True):
        np.testing.assert_allclose(restored, original, atol=1e-3)
    assert back.features["classification"].tolist() == ["Tumor", "Stroma", "Tumor"]


def test_shapes_drawn_over_a_um_scaled_image_reopen_over_the_same_tissue(
    make_napari_viewer, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    (image,) = viewer.open(sample_path("breakhis_benign"), plugin=PLUGIN)  # 0.492 µm/px
    shapes = viewer.add_shapes(
        np.array([[100, 200], [300, 500]], float),
        shape_type="rectangle",
        scale=image.scale,  # as napari's new-Shapes button places it over the image
        translate=(5.0, 7.0),
        name="tumour",
    )
    viewer.layers.selection = {shapes}  # File ▸ Save Selected Layers
    (written,) = viewer.layers.save(str(tmp_path / "tumour.geojson"), selected=True, plugin=PLUGIN)
    ring = json.loads(Path(written).read_text())["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == [200.5, 100.5]  # still image pixels, [x, y], corner-origin for QuPath
    (back,) = viewer.open(written, plugin=PLUGIN)
    np.testing.assert_allclose(back.scale, image.scale)
    np.testing.assert_allclose(back.extent.world, shapes.extent.world, atol=1e-6)


def test_a_qupath_geojson_beside_its_slide_lands_on_the_slide(
    make_napari_viewer, tmp_path: Path
) -> None:
    from slide_builders import tissue_image, write_aperio_svs

    slide = write_aperio_svs(tmp_path / "case7.svs", tissue_image(1100, 900), mpp=0.25)
    ring = [[100.0, 400.0], [300.0, 400.0], [300.0, 800.0], [100.0, 800.0], [100.0, 400.0]]
    qupath = {  # QuPath's export: full-resolution [x, y] pixels, no frame
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
            }
        ],
    }
    (tmp_path / "case7.geojson").write_text(json.dumps(qupath))
    viewer = make_napari_viewer()
    [image] = viewer.open(slide, plugin=PLUGIN)
    [roi] = viewer.open(str(tmp_path / "case7.geojson"), plugin=PLUGIN)
    np.testing.assert_allclose(roi.scale, image.scale)
    assert [str(u) for u in roi.units] == [str(u) for u in image.units] == ["micrometer"] * 2
    world = roi.data_to_world(roi.data[0][0])  # x=100, y=400: the corner of that slide pixel
    np.testing.assert_allclose(world, (399.5 * 0.25, 99.5 * 0.25))
    np.testing.assert_allclose(image.world_to_data(world), (399.5, 99.5))
    lows, highs = roi.extent.world
    np.testing.assert_allclose([*lows, *highs], [99.875, 24.875, 199.875, 74.875])


def test_labels_layer_saves_as_polygons(make_napari_viewer, tmp_path: Path) -> None:
    labels = np.zeros((64, 64), dtype=np.int32)
    labels[10:30, 10:40] = 3
    viewer = make_napari_viewer()
    viewer.add_labels(labels, name="mask")
    written = viewer.layers.save(str(tmp_path / "mask.geojson"), selected=False, plugin=PLUGIN)
    (back,) = viewer.open(written[0], plugin=PLUGIN)
    assert back.features["label"].tolist() == [3]
    rows, cols = back.data[0][:, 0], back.data[0][:, 1]  # along the painted pixels' edges
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9.5, 29.5, 9.5, 39.5)
    assert np.array_equal(back.to_masks(labels.shape)[0], labels == 3)


def test_slide_opens_multiscale_in_micrometres(make_napari_viewer, tmp_path: Path) -> None:
    from slide_builders import tissue_image, write_aperio_svs

    path = write_aperio_svs(
        tmp_path / "slide.svs", tissue_image(1100, 900), mpp=0.25, label=tissue_image(60, 90)
    )
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 1  # no label layer unless asked: it may show patient identifiers
    image = layers[0]
    assert image.multiscale and len(image.data) == 3
    assert tuple(image.scale) == pytest.approx((0.25, 0.25))
    # napari (>= 0.8) computes the scale bar's unit from the layers' units
    assert [str(unit) for unit in image.units] == ["micrometer", "micrometer"]


def test_dicom_wsi_folder_opens_from_the_viewer(make_napari_viewer, tmp_path: Path) -> None:
    from slide_builders import tissue_image, write_dicom_wsi

    write_dicom_wsi(tmp_path / "case", tissue_image(600, 520), n_levels=3, mpp=0.5)
    viewer = make_napari_viewer()
    [image] = viewer.open(str(tmp_path / "case"), plugin=PLUGIN)
    assert image.multiscale and [level.shape for level in image.data] == [
        (600, 520, 3),
        (300, 260, 3),
        (150, 130, 3),
    ]
    assert tuple(image.scale) == pytest.approx((0.5, 0.5))


def test_a_slide_in_micrometres_and_a_mammogram_in_millimetres_share_one_physical_world(
    make_napari_viewer, dicom_factory, tmp_path: Path
) -> None:
    from slide_builders import tissue_image, write_aperio_svs

    slide = write_aperio_svs(tmp_path / "slide.svs", tissue_image(1100, 900), mpp=0.25)
    film = dicom_factory("film.dcm", np.full((300, 200), 900, np.uint16), spacing=(0.1, 0.1))
    viewer = make_napari_viewer()
    [histology] = viewer.open(slide, plugin=PLUGIN)
    [mammogram] = viewer.open(str(film), plugin=PLUGIN)
    assert [str(u) for u in histology.units] == ["micrometer", "micrometer"]
    assert [str(u) for u in mammogram.units] == ["millimeter", "millimeter"]
    # the scale bar has one unit: the film's 30 x 20 mm must span 30,000 x 20,000 µm there
    world = viewer.layers.extent.world
    assert [str(u) for u in viewer.layers.extent.units] == ["micrometer", "micrometer"]
    assert world[1] - world[0] == pytest.approx((29_900.0, 19_900.0))
