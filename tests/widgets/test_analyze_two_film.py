"""The Analyze dock reads a mammogram against the same woman's other film, when its model can."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import pytest

from napari_pathreview.bilateral import BilateralCalibration, card_entry

CALIBRATION = BilateralCalibration(slope=1.3, intercept=-0.1, fitted=True, n_films=32)
CLASSES = ["normal", "benign", "malignant"]


@pytest.fixture
def woman_14(tmp_path: Path, sample_data: Path) -> list[Path]:
    """MIAS woman 14: her film mdb028, and as mdb027 the same film mirrored (her other side)."""
    right = shutil.copy(sample_data / "mias" / "mdb028.pgm", tmp_path / "mdb028.pgm")
    left = tmp_path / "mdb027.pgm"
    cv2.imwrite(str(left), cv2.imread(str(right), cv2.IMREAD_GRAYSCALE)[:, ::-1])
    return [left, Path(right)]


def _open(viewer: Any, paths: list[Path]) -> list[Any]:
    return [viewer.open(p, plugin="napari-pathreview")[0] for p in paths]


def _run_to_end(qtbot: Any, widget: Any) -> None:
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.cancel_button.isEnabled(), timeout=60_000)


def test_her_other_film_is_preselected_and_the_two_film_decision_is_shown(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, register_model: Any, woman_14: list
) -> None:
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.inference.two_film import decide_pair

    ref = register_model(
        "tiny-two-film",
        "mammogram",
        CLASSES,
        seed=3,
        bilateral=card_entry(CALIBRATION, "normal", "fold 1's validation films"),
    )
    viewer = make_napari_viewer()
    left, right = _open(viewer, woman_14)
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = right.name
    widget.model_combo.value = ref
    assert not widget.two_film.isHidden()
    assert widget.two_film.other.currentText() == left.name  # same woman (MIAS numbers)
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget)

    decision = widget.result.two_film
    assert decision is not None and decision.other == left.name
    predictor = Predictor.from_registry(ref, device="cpu")
    alone = [predictor.predict([layer.data])[0].probabilities for layer in (right, left)]
    expected = decide_pair(predictor.card, alone[0], alone[1], left.name)
    assert decision.probabilities == pytest.approx(expected.probabilities, abs=1e-5)
    assert widget.result.probabilities == pytest.approx(alone[0], abs=1e-5)  # still one film
    shown = widget.two_film.text.text()
    assert f"against {left.name}: {decision.label}" in shown
    assert "calibrated on fold 1's validation films" in shown
    assert right.metadata["pathreview"]["prediction"]["two_film"]["other"] == left.name


def test_only_mammograms_are_offered_and_a_choice_made_by_hand_is_kept(
    make_napari_viewer: Any, open_widget: Any, register_model: Any, woman_14: list, sample_data
) -> None:
    from napari_pathreview.widgets._two_film_box import NO_OTHER

    ref = register_model(
        "tiny-two-film", "mammogram", CLASSES, bilateral=card_entry(CALIBRATION, "normal", "x")
    )
    viewer = make_napari_viewer()
    histology = _open(viewer, [next((sample_data / "breakhis").rglob("*.png"))])[0]
    left, right = _open(viewer, woman_14)
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = right.name
    widget.model_combo.value = ref
    choices = [widget.two_film.other.itemText(i) for i in range(widget.two_film.other.count())]
    assert choices == [NO_OTHER, left.name]  # the H&E image is no other breast
    assert histology.name not in choices
    widget.two_film.other.setCurrentText(NO_OTHER)  # the reader wants this film alone
    viewer.add_shapes(name="my ROI")  # the layer list changes; the analysed image does not
    assert widget.image_combo.value == right.name
    assert widget.two_film.other_layer() is None


def test_a_model_without_the_calibration_reads_one_film(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, mammogram_model: str, woman_14: list
) -> None:
    viewer = make_napari_viewer()
    _left, right = _open(viewer, woman_14)
    widget = open_widget(viewer, "Analyze")
    widget.image_combo.value = right.name
    widget.model_combo.value = mammogram_model
    assert widget.two_film.isHidden()
    assert widget.two_film.other_layer() is None
    widget.cam_method.value = "none"
    _run_to_end(qtbot, widget)
    assert widget.result is not None and widget.result.two_film is None
    assert widget.two_film.text.text() == ""


@pytest.fixture
def four_view_exam(dicom_factory: Any) -> list[Path]:
    """One woman's screening exam as DICOM: left and right breast, CC and MLO views."""
    import numpy as np

    film = cv2.imread(str(Path(__file__).parents[2] / "sample_data/mias/mdb028.pgm"), 0)
    pixels = film[::4, ::4].astype(np.uint16) * 16  # 12-bit
    return [
        dicom_factory(f"{side}{view}.dcm", pixels, laterality=side, view=view, patient_id="W9")
        for side, view in [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
    ]


def test_in_a_four_view_exam_her_other_breast_in_the_same_view_is_preselected(
    make_napari_viewer: Any, open_widget: Any, register_model: Any, four_view_exam: list
) -> None:
    ref = register_model(
        "tiny-two-film", "mammogram", CLASSES, bilateral=card_entry(CALIBRATION, "normal", "x")
    )
    viewer = make_napari_viewer()
    _open(viewer, four_view_exam)
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = ref
    for film, other in [("LCC", "RCC"), ("RMLO", "LMLO"), ("LMLO", "RMLO")]:
        widget.image_combo.value = film
        assert widget.two_film.other.currentText() == other


def test_a_film_of_the_same_breast_picked_as_the_other_is_refused_naming_both(
    make_napari_viewer: Any, open_widget: Any, register_model: Any, four_view_exam: list
) -> None:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    ref = register_model(
        "tiny-two-film", "mammogram", CLASSES, bilateral=card_entry(CALIBRATION, "normal", "x")
    )
    viewer = make_napari_viewer()
    _open(viewer, four_view_exam)
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = ref
    widget.image_combo.value = "LCC"
    widget.two_film.other.setCurrentText("LMLO")
    assert widget.run() is None
    assert any("'LCC' and 'LMLO': both films of patient W9 show the L breast" in m for m in seen), (
        seen
    )


def test_another_womans_film_picked_as_the_other_is_refused_naming_both(
    make_napari_viewer: Any,
    open_widget: Any,
    register_model: Any,
    woman_14: list,
    four_view_exam: list,
) -> None:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    ref = register_model(
        "tiny-two-film", "mammogram", CLASSES, bilateral=card_entry(CALIBRATION, "normal", "x")
    )
    viewer = make_napari_viewer()
    _open(viewer, [woman_14[1], four_view_exam[0]])
    widget = open_widget(viewer, "Analyze")
    widget.model_combo.value = ref
    widget.image_combo.value = "mdb028"
    widget.two_film.other.setCurrentText("LCC")
    assert widget.run() is None
    assert any("'LCC' is patient W9's and 'mdb028' patient 14's" in m for m in seen), seen
