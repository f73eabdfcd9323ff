"""The Analyze dock's advanced slide settings: what ``predict-slides`` sets with
``--model-um-per-px``, ``--mpp``, ``--min-tissue`` and ``--no-tissue``, set from napari.

The dock is opened from Plugins ▸ PathReview on a slide opened through the plugin's reader.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.viewer

SLIDE_UM = 0.25
MODEL_UM = 0.5


def _slide(path: Path, microns_per_pixel: float | None) -> Path:
    """A 512×512 two-level pyramid with an elliptic patch of tissue on glass."""
    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    image = np.full((512, 512, 3), 240, np.uint8)
    tissue = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 150.0) ** 2 < 1
    texture = np.array([175, 105, 160]) + 25 * np.sin(xx[..., None] / 9.0)
    image[tissue] = np.clip(texture + rng.normal(0, 20, image.shape), 0, 215)[tissue]
    return write_pyramidal_tiff(
        image, path, tile=128, n_levels=2, microns_per_pixel=microns_per_pixel
    )


def _register(pixel_size: float | None) -> str:
    """A tiny histology model; its card states ``pixel_size`` µm/px (None: no resolution)."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    preprocess = {"input_size": [3, 64, 64]}
    if pixel_size is not None:
        preprocess.update(pixel_size=pixel_size, pixel_unit="um")
    card = {
        "name": "tiny-slide-settings",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 64, 64],
        "threshold": 0.5,
        "preprocess": preprocess,
    }
    model = create_model("mobilenetv3_small_050", 2)
    return f"tiny-slide-settings@{ModelRegistry().register(model, card)}"


@pytest.fixture
def messages() -> list[str]:
    """Every napari notification shown during the test, as text."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def _dock(viewer: Any, open_widget: Any, slide: Path, model: str) -> Any:
    """The Analyze dock on ``slide`` with ``model``, no CAM, its slide settings unfolded."""
    (layer,) = viewer.open(slide, plugin="napari-pathreview")
    analyze = open_widget(viewer, "Analyze")
    analyze.image_combo.value = layer.name
    analyze.model_combo.value = model
    analyze.cam_method.value = "none"
    analyze.slide_box.toggle.click()  # what the user does: unfold "Advanced slide settings"
    assert analyze.slide_box.body.native.isVisibleTo(analyze)
    return analyze


def _run(qtbot: Any, analyze: Any) -> Any:
    analyze.result = None
    assert analyze.run() is not None
    qtbot.waitUntil(lambda: not analyze.cancel_button.isEnabled(), timeout=120_000)
    return analyze.result


def test_a_slide_and_a_model_without_a_resolution_run_at_the_um_per_px_given_in_the_dock(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path, messages: list[str]
) -> None:
    model = _register(pixel_size=None)
    analyze = _dock(make_napari_viewer(), open_widget, _slide(tmp_path / "s.tif", None), model)
    box = analyze.slide_box
    assert box.model_um.native.placeholderText() == "card states none"
    analyze.pixel_size.field.value = SLIDE_UM  # the slide's own µm/px: the field beside Set
    analyze.pixel_size.apply_button.native.click()
    assert _run(qtbot, analyze) is None
    assert any("no training resolution" in m and "'model µm/px'" in m for m in messages)

    box.model_um.value = str(MODEL_UM)
    result = _run(qtbot, analyze)
    assert result is not None and result.tiled is not None
    assert result.tiled.grid.um_per_px == pytest.approx(MODEL_UM)
    assert result.tiled.grid.level0_um_per_px == pytest.approx(SLIDE_UM)


def test_the_dock_classifies_the_tiles_predict_slides_does_with_the_same_flags(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path, capsys: Any
) -> None:
    from napari_pathreview.cli import main

    model = _register(pixel_size=None)
    slide = _slide(tmp_path / "s.tif", None)
    flags = ["--mpp", SLIDE_UM, "--model-um-per-px", MODEL_UM, "--min-tissue", 0.6]
    out = tmp_path / "out"
    argv = ["predict-slides", slide, "--model", model, "--out", out, "--workers", 0, *flags]
    assert main([str(a) for a in [*argv, "--no-progress"]]) == 0, capsys.readouterr().err
    with (out / "slides.csv").open(encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))

    analyze = _dock(make_napari_viewer(), open_widget, slide, model)
    analyze.pixel_size.field.value = SLIDE_UM
    analyze.pixel_size.apply_button.native.click()
    analyze.slide_box.model_um.value = str(MODEL_UM)
    analyze.slide_box.min_tissue.value = "0.6"
    tiled = _run(qtbot, analyze).tiled
    assert len(tiled.tile_probabilities) == int(row["n_tiles"])
    assert tiled.grid.um_per_px == pytest.approx(float(row["um_per_px"]))
    malignant = tiled.aggregate["mean"]["malignant"]
    assert malignant == pytest.approx(float(row["mean_malignant"]), abs=1e-5)


def test_a_higher_min_tissue_classifies_fewer_tiles_of_the_slide(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    model = _register(pixel_size=MODEL_UM)
    slide = _slide(tmp_path / "s.tif", SLIDE_UM)
    analyze = _dock(make_napari_viewer(), open_widget, slide, model)
    assert analyze.slide_box.min_tissue.value == "0.25"  # SlideSettings' default, as the CLI's
    default = _run(qtbot, analyze).tiled
    analyze.slide_box.min_tissue.value = "0.9"
    strict = _run(qtbot, analyze).tiled
    assert 0 < strict.coverage.sum() < default.coverage.sum() < default.grid.n_cells
    assert len(strict.tile_probabilities) == strict.coverage.sum()
    assert analyze.result.record()["settings"]["slide_settings"] == {"min_tissue": 0.9}


def test_classifying_glass_tiles_too_classifies_every_tile(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    model = _register(pixel_size=MODEL_UM)
    analyze = _dock(make_napari_viewer(), open_widget, _slide(tmp_path / "s.tif", SLIDE_UM), model)
    analyze.slide_box.glass.value = True
    tiled = _run(qtbot, analyze).tiled
    assert tiled.coverage.all()
    assert len(tiled.tile_probabilities) == tiled.grid.n_cells


@pytest.mark.parametrize(
    ("field", "typed", "said"),
    [
        ("model_um", "0", "model µm/px must be a positive number (µm per pixel), got 0.0"),
        ("model_um", "-0.5", "model µm/px must be a positive number (µm per pixel), got -0.5"),
        ("min_tissue", "1.5", "min tissue must be within [0, 1], got 1.5"),
        ("min_tissue", "a lot", "min tissue must be within [0, 1], got 'a lot'"),
    ],
)
def test_an_invalid_slide_setting_is_refused_naming_its_field_and_starts_nothing(
    make_napari_viewer: Any,
    open_widget: Any,
    tmp_path: Path,
    messages: list[str],
    field: str,
    typed: str,
    said: str,
) -> None:
    model = _register(pixel_size=MODEL_UM)
    analyze = _dock(make_napari_viewer(), open_widget, _slide(tmp_path / "s.tif", SLIDE_UM), model)
    getattr(analyze.slide_box, field).value = typed
    assert analyze.run() is None
    assert analyze.worker is None
    assert f"Analyze: {said}" in messages


WORKSPACE = "Workspace (Analyze + Review)"


def _workspace_on(viewer: Any, open_widget: Any, slide: Path, model: str) -> Any:
    """The Workspace dock with ``slide`` opened and chosen, ``model`` picked, no CAM."""
    workspace = open_widget(viewer, WORKSPACE)
    (layer,) = viewer.open(slide, plugin="napari-pathreview")
    analyze = workspace.analyze
    analyze.image_combo.value = layer.name
    analyze.model_combo.value = model
    analyze.cam_method.value = "none"
    return workspace


def _set_slide_settings(analyze: Any) -> None:
    """Every slide setting away from its default (the tiling mode is set by each test)."""
    analyze.slide_box.model_um.value = str(MODEL_UM)
    analyze.slide_box.min_tissue.value = "0.6"
    analyze.target_class.value = "malignant"


def test_a_session_restores_the_slide_settings_and_a_run_uses_them(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    model = _register(pixel_size=None)  # runs only with the model µm/px the session kept
    slide = _slide(tmp_path / "s.tif", SLIDE_UM)
    workspace = _workspace_on(make_napari_viewer(), open_widget, slide, model)
    _set_slide_settings(workspace.analyze)
    saved = workspace.save_session(tmp_path / "day1.session.json")
    assert saved is not None

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    box = restored.analyze.slide_box
    assert (box.model_um.value, box.min_tissue.value) == ("0.5", "0.6")
    assert restored.analyze.target_class.value == "malignant"
    result = _run(qtbot, restored.analyze)
    assert result is not None and result.tiled is not None
    assert result.tiled.grid.um_per_px == pytest.approx(MODEL_UM)
    assert result.record()["settings"]["slide_settings"] == {
        "model_um_per_px": MODEL_UM,
        "min_tissue": 0.6,
    }
    assert result.record()["settings"]["target_class"] == "malignant"


def test_a_session_restores_the_preview_mode_and_glass_tiles_and_a_run_uses_them(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    model = _register(pixel_size=MODEL_UM)
    slide = _slide(tmp_path / "s.tif", SLIDE_UM)
    workspace = _workspace_on(make_napari_viewer(), open_widget, slide, model)
    workspace.analyze.slide_mode.value = "preview"
    workspace.analyze.slide_box.glass.value = True
    saved = workspace.save_session(tmp_path / "day1.session.json")

    workspace2 = open_widget(make_napari_viewer(), WORKSPACE)
    assert workspace2.restore_session(saved)
    analyze = workspace2.analyze
    assert analyze.slide_mode.value == "preview" and analyze.slide_box.glass.value
    tiled = _run(qtbot, analyze).tiled
    assert analyze.result.request.slide.mode == "preview"
    assert tiled.coverage.all() and len(tiled.tile_probabilities) == tiled.grid.n_cells


def test_a_bad_setting_in_a_session_is_named_with_its_file_and_the_rest_restored(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path, messages: list[str]
) -> None:
    import json

    model = _register(pixel_size=None)
    slide = _slide(tmp_path / "s.tif", SLIDE_UM)
    workspace = _workspace_on(make_napari_viewer(), open_widget, slide, model)
    _set_slide_settings(workspace.analyze)
    workspace.analyze.threshold.value = 0.7
    saved = workspace.save_session(tmp_path / "day1.session.json")
    document = json.loads(saved.read_text(encoding="utf-8"))
    document["analyze"]["slide"]["min_tissue"] = 1.5  # hand-edited, or another version's
    document["analyze"]["tta"] = "sideways"
    document["layers"][0]["um_per_px"] = -0.25
    saved.write_text(json.dumps(document), encoding="utf-8")

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)  # the rest is restored
    (warning,) = [m for m in messages if "not restored" in m]
    assert str(saved) in warning
    assert "analyze.slide.min_tissue: min tissue must be within [0, 1], got 1.5" in warning
    assert "analyze.tta: 'sideways' is not a valid choice" in warning
    assert "layers[0].um_per_px (image 's'): s: pixel size must be positive, got -0.25" in warning
    analyze = restored.analyze
    assert analyze.slide_box.min_tissue.value == "0.25"  # left at its default
    assert analyze.tta.value == "none"
    assert analyze.slide_box.model_um.value == "0.5"
    assert analyze.target_class.value == "malignant"
    assert analyze.threshold.value == pytest.approx(0.7)
    assert tuple(analyze.image_layer.scale) == (SLIDE_UM, SLIDE_UM)  # the file's size kept


def test_a_session_saved_before_the_slide_settings_were_kept_restores_their_defaults(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path, messages: list[str]
) -> None:
    import json

    model = _register(pixel_size=MODEL_UM)
    slide = _slide(tmp_path / "s.tif", SLIDE_UM)
    workspace = _workspace_on(make_napari_viewer(), open_widget, slide, model)
    workspace.analyze.cam_method.value = "gradcam++"
    saved = workspace.save_session(tmp_path / "old.session.json")
    document = json.loads(saved.read_text(encoding="utf-8"))
    for key in ("slide", "target_class", "other_film"):
        del document["analyze"][key]
    saved.write_text(json.dumps(document), encoding="utf-8")

    restored = open_widget(make_napari_viewer(), WORKSPACE)
    assert restored.restore_session(saved)
    assert not any("not restored" in m for m in messages)
    analyze = restored.analyze
    assert analyze.cam_method.value == "gradcam++"
    assert analyze.slide_mode.value == "matched" and not analyze.slide_box.glass.value
    assert (analyze.slide_box.model_um.value, analyze.slide_box.min_tissue.value) == ("", "0.25")


def test_a_bad_value_left_in_the_hidden_slide_settings_does_not_refuse_a_mammogram_run(
    qtbot: Any,
    make_napari_viewer: Any,
    open_widget: Any,
    tmp_path: Path,
    sample_data: Path,
    mammogram_model: str,
) -> None:
    model = _register(pixel_size=MODEL_UM)
    viewer = make_napari_viewer()
    analyze = _dock(viewer, open_widget, _slide(tmp_path / "s.tif", SLIDE_UM), model)
    analyze.slide_box.min_tissue.value = "1.5"  # refused while it applies
    assert analyze.run() is None
    film = viewer.open(sample_data / "mias/mdb028.pgm", plugin="napari-pathreview")[0]
    analyze.image_combo.value = film.name
    analyze.model_combo.value = mammogram_model
    assert analyze.slide_box.isHidden()
    result = _run(qtbot, analyze)
    assert result is not None and result.request.slide.min_tissue == 0.25
