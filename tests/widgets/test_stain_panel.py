"""The Analyze widget's stain panel: unavailable methods, user targets, side-by-side views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from review_helpers import messages

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"
REFERENCE = "he_reference/HEnorm_python_example1.png"


def test_methods_the_card_cannot_serve_are_disabled_before_the_model_loads(
    open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    seen = messages()
    viewer, _ = open_sample(BREAKHIS)
    widget = open_widget(viewer, "Analyze")
    loads: list[str] = []
    widget.load_model = lambda ref, device: loads.append(ref)
    box = widget.stain_box
    reasons = box.disabled_reasons()
    assert set(reasons) == {"macenko", "vahadane"}
    assert "needs a fitted target" in reasons["macenko"]
    model = box.method.model()
    disabled = {
        model.item(i).text() for i in range(model.rowCount()) if not model.item(i).isEnabled()
    }
    assert disabled == {"macenko", "vahadane"}
    assert "macenko" in box.reason.text()
    with pytest.raises(Exception, match="needs a fitted target"):
        box.select("macenko")
    box.method.setCurrentText("vahadane")  # forced past the disabled item
    assert widget.run() is None
    assert loads == [] and any("needs a fitted target" in m for m in seen)


def test_a_target_fitted_to_an_image_layer_enables_macenko_for_the_run(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str, sample_data: Path
) -> None:
    viewer, _ = open_sample(BREAKHIS)
    reference = viewer.open(sample_data / REFERENCE, plugin="napari-pathreview")[0]
    widget = open_widget(viewer, "Analyze")
    box = widget.stain_box
    box.fit_method.setCurrentText("macenko")
    box.refresh_layers()
    assert box.fit_to_layer(reference.name) is not None
    qtbot.waitUntil(lambda: box.user_target is not None, timeout=30_000)
    assert "macenko" not in box.disabled_reasons()
    assert box.method.currentText() == "macenko"
    widget.image_combo.value = "SOB_M_DC-14-2523-40-010"
    widget.cam_method.value = "none"
    widget.run()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=60_000)
    assert widget.result.request.stain["method"] == "macenko"
    assert widget.result.prediction.stain == "macenko"


def test_a_target_file_enables_vahadane_and_a_bad_file_is_named(
    open_sample: Any, open_widget: Any, histology_model: str, sample_data: Path, tmp_path: Path
) -> None:
    from napari_pathreview.stain import get_normalizer

    seen = messages()
    rgb = np.asarray(Image.open(sample_data / REFERENCE).convert("RGB"))
    target = tmp_path / "vahadane.json"
    target.write_text(json.dumps(get_normalizer("vahadane").fit(rgb).to_dict()))
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    viewer, _ = open_sample(BREAKHIS)
    box = open_widget(viewer, "Analyze").stain_box
    assert box.load_target_file(str(bad)) is None
    assert any("broken.json" in m for m in seen)
    assert box.load_target_file(str(target))["method"] == "vahadane"
    assert "vahadane" not in box.disabled_reasons()
    assert box.value()["method"] == "vahadane"


def test_compare_shows_every_usable_normalisation_beside_the_image(
    open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    image = layers[0]
    widget = open_widget(viewer, "Analyze")
    views = widget.stain_box.compare(image.name)
    assert [v.name for v in views] == [
        f"stain none · {image.name}",
        f"stain reinhard · {image.name}",
    ]
    right_edge = image.extent.world[1][-1]
    assert all(v.extent.world[0][-1] > right_edge for v in views)  # side by side, no overlap
    assert widget.image_combo.choices == (image.name,)  # the views are not offered as images


def test_fitting_a_stain_target_to_a_mammogram_layer_is_refused_saying_why(
    open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    seen = messages()
    viewer, layers = open_sample("mias/mdb028.pgm")
    box = open_widget(viewer, "Analyze").stain_box
    box.refresh_layers()
    assert box.fit_to_layer(layers[0].name) is None  # no fit started
    assert box.user_target is None and box.target_label.text() == "user target: none"
    assert any(
        "layer 'mdb028': mammogram image: stain normalisation is for H&E histology only" in m
        for m in seen
    ), seen


def _fit_choices(box: Any) -> list[str]:
    """The layers the "Fit" row offers."""
    return [box.fit_layer.itemText(i) for i in range(box.fit_layer.count())]


def test_the_fit_layer_list_offers_h_and_e_images_and_never_a_mammogram(
    make_napari_viewer: Any, histology_model: str, sample_data: Path, shared_data: Path
) -> None:
    viewer = make_napari_viewer()
    film = viewer.open(shared_data / "mias_full/mdb001.png", plugin="napari-pathreview")[0]
    assert film.metadata["pathreview"]["modality"] == "mammogram"
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-pathreview", "Analyze")
    box = widget.stain_box
    assert _fit_choices(box) == []
    he = viewer.open(sample_data / REFERENCE, plugin="napari-pathreview")[0]
    assert _fit_choices(box) == [he.name]  # updated as the layer was added
    viewer.layers.remove(he)
    assert _fit_choices(box) == []  # and as it was removed
    assert film.name in [layer.name for layer in viewer.layers]


def test_a_fit_that_finds_no_tissue_is_a_notice_naming_the_layer_without_a_traceback(
    qtbot: Any, open_sample: Any, open_widget: Any, histology_model: str
) -> None:
    seen = messages()
    viewer, _ = open_sample(BREAKHIS)
    viewer.add_image(np.full((96, 96, 3), 250, np.uint8), rgb=True, name="blank glass")
    box = open_widget(viewer, "Analyze").stain_box
    box.fit_method.setCurrentText("macenko")
    box.refresh_layers()
    worker = box.fit_to_layer("blank glass")
    assert worker is not None
    qtbot.waitUntil(lambda: box.fit_button.isEnabled(), timeout=30_000)
    assert any("blank glass" in m and "no tissue" in m for m in seen), seen
    assert box.user_target is None
    assert box.target_label.text() == "user target: none"  # not "fitting … to blank glass…"
