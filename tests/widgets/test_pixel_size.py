"""Issue 12: a slide whose file states no pixel size gets one from the Analyze widget's field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_pathreview.widgets._scale import scale_bar

pytestmark = pytest.mark.viewer

MODEL_UM = 0.5
WORKSPACE = "Workspace (Analyze + Review)"


def _unscaled_slide(path: Path, microns_per_pixel: float | None = None) -> Path:
    """A 512×512 two-level pyramid with tissue and no resolution tags (or these µm/px)."""
    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    image = np.full((512, 512, 3), 240, np.uint8)
    tissue = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 200.0) ** 2 < 1
    texture = np.array([175, 105, 160]) + 25 * np.sin(xx[..., None] / 9.0)
    image[tissue] = np.clip(texture + rng.normal(0, 20, image.shape), 0, 215)[tissue]
    return write_pyramidal_tiff(
        image,
        path,
        tile=128,
        n_levels=2,
        microns_per_pixel=microns_per_pixel,
        compression="deflate",
    )


def _register_model_at(um_per_px: float) -> str:
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    card = {
        "name": "tiny-matched",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 64, 64],
        "threshold": 0.5,
        "preprocess": {"input_size": [3, 64, 64], "pixel_size": um_per_px, "pixel_unit": "um"},
    }
    model = create_model("mobilenetv3_small_050", 2)
    return f"tiny-matched@{ModelRegistry().register(model, card)}"


def _run(qtbot: Any, analyze: Any) -> Any:
    analyze.result = None
    assert analyze.run() is not None
    qtbot.waitUntil(lambda: not analyze.cancel_button.isEnabled(), timeout=120_000)
    return analyze.result


def test_setting_the_pixel_size_scales_the_layer_and_enables_matched_tiling(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    ref = _register_model_at(MODEL_UM)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(_unscaled_slide(tmp_path / "slide.tif"), plugin="napari-pathreview")
    assert sum("does not state its pixel size" in m for m in seen) == 1  # said once
    assert tuple(layer.scale) == (1.0, 1.0)
    analyze = open_widget(viewer, "Analyze")
    analyze.model_combo.value = ref
    analyze.cam_method.value = "none"
    box = analyze.pixel_size
    assert box.field.enabled and box.apply_button.enabled and box.field.value == 0
    assert _run(qtbot, analyze) is None  # matched tiling refuses a slide without a scale
    assert any("states no physical pixel size" in m for m in seen)

    roi = viewer.add_shapes(
        [np.array([[100, 100], [100, 300], [300, 300]])], shape_type="polygon", name="slide ROI"
    )
    other = viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="slide_2")
    analyze.image_combo.value = layer.name
    box.field.value = 0.25
    box.apply_button.native.click()  # what the user does in the dock
    assert tuple(layer.scale) == (0.25, 0.25)
    assert tuple(roi.scale) == (0.25, 0.25)  # the ROI drawn in pixels stays over its tissue
    assert tuple(other.scale) == (1.0, 1.0)  # another image is not touched
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["pathreview"]["um_per_px"] == 0.25
    assert layer.metadata["pathreview"]["um_per_px_source"] == "user"
    assert scale_bar(viewer).visible
    result = _run(qtbot, analyze)
    assert result is not None and result.tiled is not None
    assert result.tiled.grid.um_per_px == pytest.approx(MODEL_UM)  # tiles at the model's µm/px


def test_an_unknown_pixel_size_reads_unknown_and_is_never_set_as_zero(
    make_napari_viewer: Any, open_widget: Any, sample_data: Path
) -> None:
    """The H&E reference tile states no µm/px: the field says so instead of "0.0000"."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(
        sample_data / "he_reference/HEnorm_python_example1.png", plugin="napari-pathreview"
    )
    box = open_widget(viewer, "Analyze").pixel_size
    assert box.field.enabled
    assert box.field.native.text() == "unknown"
    assert box.typed() is None
    box.apply_button.native.click()  # Set pressed without typing a size
    assert "um_per_px" not in layer.metadata["pathreview"]  # the analysis gets None, not 0
    assert tuple(layer.scale) == (1.0, 1.0)
    assert any("pixel size is unknown" in m for m in seen)


def test_the_field_shows_the_size_a_file_states_and_is_off_for_a_mammogram(
    make_napari_viewer: Any, open_widget: Any, sample_data: Path
) -> None:
    viewer = make_napari_viewer()
    (patch,) = viewer.open(
        sample_data / "breakhis/SOB_M_DC-14-2523-40-010.png", plugin="napari-pathreview"
    )
    film = viewer.open(sample_data / "mias/mdb028.pgm", plugin="napari-pathreview")[0]
    analyze = open_widget(viewer, "Analyze")
    box = analyze.pixel_size
    analyze.image_combo.value = patch.name
    assert box.field.enabled and box.apply_button.enabled
    assert box.field.value == pytest.approx(patch.metadata["pathreview"]["um_per_px"], abs=1e-4)
    assert "the pixel size its dataset documents for this file name" in box.native.toolTip()
    analyze.image_combo.value = film.name
    assert not box.field.enabled and not box.apply_button.enabled
    assert not box.apply()


def test_a_typed_pixel_size_comes_back_with_the_session(
    make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    slide = _unscaled_slide(tmp_path / "slide.tif")
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    (layer,) = viewer.open(slide, plugin="napari-pathreview")
    box = workspace.analyze.pixel_size
    workspace.analyze.image_combo.value = layer.name
    box.field.value = 0.5
    assert box.apply()
    saved = workspace.save_session(tmp_path / "s.json")
    assert saved is not None

    viewer2 = make_napari_viewer()
    assert open_widget(viewer2, WORKSPACE).restore_session(saved)
    restored = viewer2.layers[layer.name]
    assert tuple(restored.scale) == (0.5, 0.5)
    assert restored.metadata["pathreview"]["um_per_px"] == 0.5


def test_the_dock_replaces_a_stated_pixel_size_and_the_layer_its_roi_and_session_follow(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    """A file may state a wrong size: the field shows it, and Set replaces it as ``--mpp``."""
    slide = _unscaled_slide(tmp_path / "stated.tif", microns_per_pixel=1.0)
    ref = _register_model_at(MODEL_UM)
    viewer = make_napari_viewer()
    workspace = open_widget(viewer, WORKSPACE)
    (layer,) = viewer.open(slide, plugin="napari-pathreview")
    analyze = workspace.analyze
    analyze.image_combo.value = layer.name
    analyze.model_combo.value = ref
    analyze.cam_method.value = "none"
    box = analyze.pixel_size
    assert box.field.enabled and box.field.value == pytest.approx(1.0)  # the file's
    roi = viewer.add_shapes(
        [np.array([[100, 100], [100, 300], [300, 300]])], shape_type="polygon", name="ROI"
    )
    assert tuple(roi.scale) == (1.0, 1.0)
    box.field.value = 0.25
    box.apply_button.native.click()
    assert tuple(layer.scale) == (0.25, 0.25)
    assert tuple(roi.scale) == (0.25, 0.25)
    assert "the file states 1 µm/px" in box.native.toolTip()
    result = _run(qtbot, analyze)
    assert result.tiled.grid.level0_um_per_px == pytest.approx(0.25)
    saved = workspace.save_session(tmp_path / "s.json")

    viewer2 = make_napari_viewer()
    restored = open_widget(viewer2, WORKSPACE)
    assert restored.restore_session(saved)
    assert tuple(viewer2.layers[layer.name].scale) == (0.25, 0.25)
    assert restored.analyze.pixel_size.field.value == pytest.approx(0.25)
