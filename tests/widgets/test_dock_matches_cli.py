"""The Analyze dock and the CLI give the same figures for the same file, model and settings.

The dock is opened from Plugins ▸ PathReview on an image opened through the plugin's reader;
the CLI runs in-process (``cli.main``) on the same file with the matching flags.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.viewer

# two overlapping circles (MIAS mdb005's): at 0.2 mm/px, pixels exactly on their edges are
# where a mask drawn through the viewer's world coordinates can lose float precision
TWO_CIRCLES = "REFNUM BG CLASS SEVERITY X Y RADIUS\nmdb028 F CIRC B 477 133 30\n" + (
    "mdb028 F CIRC B 500 168 26\n"
)
REFERENCE = "he_reference/HEnorm_python_example1.png"
BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"


def _cli(capsys: Any, *argv: Any) -> str:
    from napari_pathreview.cli import main

    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _layer(layers: list[Any], kind: str) -> Any:
    import napari.layers

    return next(lay for lay in layers if isinstance(lay, getattr(napari.layers, kind)))


def _run(qtbot: Any, widget: Any) -> Any:
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=120_000)
    assert widget.result is not None
    return widget.result


@pytest.fixture
def film(tmp_path: Path, sample_data: Path) -> Path:
    """A MIAS film with an Info.txt of two overlapping ROI circles beside it."""
    folder = tmp_path / "mias"
    folder.mkdir()
    shutil.copy(sample_data / "mias" / "mdb028.pgm", folder / "mdb028.pgm")
    (folder / "Info.txt").write_text(TWO_CIRCLES, encoding="utf-8")
    return folder / "mdb028.pgm"


@pytest.mark.parametrize("roi_source", ["Info.txt circles", "GeoJSON file"])
def test_dock_iou_and_dice_equal_explain_s_for_the_same_roi(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    capsys: Any,
    tmp_path: Path,
    mammogram_model: str,
    film: Path,
    roi_source: str,
) -> None:
    viewer = make_napari_viewer()
    opened = viewer.open(film, plugin="napari-pathreview")
    roi = _layer(opened, "Shapes")
    flags: list[Any] = ["--mias-info", film.parent / "Info.txt"]
    if roi_source == "GeoJSON file":  # the same circles, saved and read back as a file
        geojson = tmp_path / "rois" / "mdb028.geojson"
        geojson.parent.mkdir()
        roi.save(str(geojson), plugin="napari-pathreview")
        roi = viewer.open(geojson, plugin="napari-pathreview")[0]
        flags = ["--roi", geojson]
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = mammogram_model
    widget.roi_combo.value = roi.name
    widget.threshold.value = 0.0  # every pixel of a non-flat CAM is hot: IoU is ROI area
    result = _run(qtbot, widget)
    assert result.cam.cam.max() > result.cam.cam.min()
    _cli(capsys, "explain", film, "--model", mammogram_model, "--threshold", "0", *flags,
         "--out", tmp_path / "scores.csv")  # fmt: skip
    (row,) = _rows(tmp_path / "scores.csv")
    assert row["target"] == result.cam.target_label
    assert widget.roi_scores["iou"] == pytest.approx(float(row["iou"]), rel=1e-9)
    assert widget.roi_scores["dice"] == pytest.approx(float(row["dice"]), rel=1e-9)


def test_explain_reads_with_the_dock_s_tta_when_given_the_same(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    capsys: Any,
    tmp_path: Path,
    mammogram_model: str,
    film: Path,
) -> None:
    viewer = make_napari_viewer()
    roi = _layer(viewer.open(film, plugin="napari-pathreview"), "Shapes")
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = mammogram_model
    widget.roi_combo.value = roi.name
    widget.tta.value = "flips"  # the views that decide the predicted class the CAM explains
    widget.threshold.value = 0.0
    result = _run(qtbot, widget)
    out = _cli(capsys, "explain", film, "--model", mammogram_model, "--tta", "flips",
               "--threshold", "0", "--mias-info", film.parent / "Info.txt",
               "--out", tmp_path / "scores.csv")  # fmt: skip
    (row,) = _rows(tmp_path / "scores.csv")
    assert row["target"] == result.cam.target_label == result.prediction.label, out
    assert widget.roi_scores["iou"] == pytest.approx(float(row["iou"]), rel=1e-9)


@pytest.mark.parametrize("method", ["macenko", "vahadane"])
def test_a_target_fitted_to_a_layer_equals_stain_fit_on_its_file(
    qtbot: Any,
    open_sample: Any,
    open_widget: Any,
    capsys: Any,
    tmp_path: Path,
    sample_data: Path,
    histology_model: str,
    method: str,
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    reference = viewer.open(sample_data / REFERENCE, plugin="napari-pathreview")[0]
    widget = open_widget(viewer, "Analyze")
    box = widget.stain_box
    box.fit_method.setCurrentText(method)
    box.refresh_layers()
    assert box.fit_to_layer(reference.name) is not None
    qtbot.waitUntil(lambda: box.user_target is not None, timeout=60_000)
    widget.image_combo.value = Path(BREAKHIS).stem
    widget.cam_method.value = "none"
    result = _run(qtbot, widget)
    target = tmp_path / f"{method}.json"
    _cli(capsys, "stain", "fit", "--method", method, "--images", sample_data / REFERENCE,
         "--out", target)  # fmt: skip
    fitted = json.loads(target.read_text(encoding="utf-8"))
    np.testing.assert_allclose(box.user_target["stain_matrix"], fitted["stain_matrix"], atol=1e-9)
    _cli(capsys, "predict", sample_data / BREAKHIS, "--model", histology_model,
         "--stain-target", target, "--out", tmp_path / "out")  # fmt: skip
    (row,) = _rows(tmp_path / "out" / "predictions.csv")
    for name, p in result.probabilities.items():
        assert p == pytest.approx(float(row[f"p_{name}"]), abs=2e-6)
    assert result.prediction.label == row["predicted_label"]


def test_predict_slides_calls_a_slide_as_the_dock_does(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    capsys: Any,
    tmp_path: Path,
    sample_data: Path,
    register_model: Any,
) -> None:
    from PIL import Image

    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    patch = np.asarray(Image.open(sample_data / BREAKHIS).convert("RGB"))
    slide = write_pyramidal_tiff(  # a BreaKHis patch as a 0.25 µm/px pyramid
        patch, tmp_path / "slide.tif", tile=128, n_levels=2, compression="deflate",
        microns_per_pixel=0.25,
    )  # fmt: skip
    spec = {"input_size": [3, 64, 64], "pixel_size": 0.5, "pixel_unit": "um"}
    model = register_model("tiny-slide", "histology", ["benign", "malignant"], preprocess=spec)
    viewer = make_napari_viewer()
    viewer.open(slide, plugin="napari-pathreview")
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = model
    widget.cam_method.value = "none"
    result = _run(qtbot, widget)
    _cli(capsys, "predict-slides", slide, "--model", model, "--out", tmp_path / "out",
         "--workers", "0", "--device", "cpu", "--no-progress")  # fmt: skip
    (row,) = _rows(tmp_path / "out" / "slides.csv")
    for name, p in result.probabilities.items():  # the dock decides on the tiles' mean …
        assert p == pytest.approx(float(row[f"mean_{name}"]), abs=1e-6)
    assert row["predicted_label"] == result.prediction.label  # … and so does the cohort run
    assert float(row["threshold"]) == result.prediction.threshold


@pytest.mark.parametrize(
    ("demo", "modality", "classes", "model_size"),
    [
        ("demo/histology/SOB_B_A-14-22549CD-40-007.jpg", "histology", ["benign", "malignant"],
         {"pixel_size": 2.0, "pixel_unit": "um"}),  # a 350-px copy of a 40X patch: 0.984 µm/px
        ("demo/mammogram/mdb028.png", "mammogram", ["normal", "benign", "malignant"],
         {"pixel_size": 1.6, "pixel_unit": "mm"}),  # a 256² copy of a mini-MIAS film: 0.8 mm/px
    ],
)  # fmt: skip
def test_the_dock_resamples_a_resized_demo_image_from_the_size_predict_does(
    qtbot: Any,
    open_sample: Any,
    open_widget: Any,
    capsys: Any,
    tmp_path: Path,
    sample_data: Path,
    register_model: Any,
    demo: str,
    modality: str,
    classes: list[str],
    model_size: dict[str, Any],
) -> None:
    spec = {"input_size": [3, 64, 64], **model_size}
    model = register_model("tiny-at-size", modality, classes, preprocess=spec)
    viewer, (layer, *_) = open_sample(demo)
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = layer.name
    widget.model_combo.value = model
    widget.cam_method.value = "none"
    result = _run(qtbot, widget)
    _cli(capsys, "predict", sample_data / demo, "--model", model, "--out", tmp_path / "out")
    (row,) = _rows(tmp_path / "out" / "predictions.csv")
    for name, p in result.probabilities.items():
        assert p == pytest.approx(float(row[f"p_{name}"]), abs=2e-6)
