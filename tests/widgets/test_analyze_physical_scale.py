"""The Analyze dock reads an image at its physical pixel size, as ``pathreview predict`` reads
its file: a model trained at 1 mm per pixel sees a 0.2 mm MIAS film shrunk five times."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import pytest

from napari_pathreview.bilateral import BilateralCalibration, card_entry

CLASSES = ["normal", "benign", "malignant"]
AT_1_MM = {
    "input_size": [3, 64, 64],
    "crop": "breast",
    "pixel_size": 1.0,
    "pixel_unit": "mm",
    "channels": "grey_to_rgb",
}


def test_both_films_are_read_at_their_mm_per_pixel_as_predict_reads_the_files(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    register_model: Any,
    sample_data: Path,
    tmp_path: Path,
) -> None:
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.inference.two_film import decide_pair

    calibration = BilateralCalibration(slope=1.3, intercept=-0.1, fitted=True, n_films=32)
    ref = register_model(
        "tiny-1mm",
        "mammogram",
        CLASSES,
        seed=3,
        preprocess=AT_1_MM,
        bilateral=card_entry(calibration, "normal", "fold 0's validation films"),
    )
    right = Path(shutil.copy(sample_data / "mias" / "mdb028.pgm", tmp_path / "mdb028.pgm"))
    left = tmp_path / "mdb027.pgm"  # her other side: the film mirrored and dimmed
    cv2.imwrite(str(left), cv2.imread(str(right), cv2.IMREAD_GRAYSCALE)[:, ::-1] // 2)
    viewer = make_napari_viewer()
    layers = [viewer.open(p, plugin="napari-pathreview")[0] for p in (right, left)]
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = layers[0].name
    widget.model_combo.value = ref
    widget.cam_method.value = "none"
    assert widget.two_film.other.currentText() == layers[1].name
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=60_000)

    predictor = Predictor.from_registry(ref, device="cpu")
    files = [p.probabilities for p in predictor.predict([right, left])]
    assert widget.result.probabilities == pytest.approx(files[0], abs=1e-5)
    expected = decide_pair(predictor.card, files[0], files[1], layers[1].name)
    assert widget.result.two_film.probabilities == pytest.approx(expected.probabilities, abs=1e-5)
