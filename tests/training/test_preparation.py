"""The spec a recipe resolves to: geometry, physical resolution (recorded or measured), refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_pathreview.training.datasets import DatasetError, PreparedImage, Sample, prepare_image
from napari_pathreview.training.preparation import base_spec, with_measured_resolution
from napari_pathreview.training.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "training"


def _canvas(um: float | None, box: tuple[int, int]) -> PreparedImage:
    return PreparedImage(np.zeros((8, 8, 3), np.uint8), (), um, box)


def test_the_demo_histology_recipe_resamples_to_half_a_micron():
    spec = base_spec(load_recipe(RECIPES / "demo_histology.yaml"))
    assert (spec.pixel_size, spec.pixel_unit, spec.um_per_px) == (0.5, "um", 0.5)
    assert (spec.hw, spec.resize, spec.padding, spec.channels) == (
        (160, 160),
        176,
        "reflect",
        "rgb",
    )


def test_a_stretching_mias_recipe_records_the_resolution_its_images_share():
    recipe = load_recipe(
        {
            "name": "m",
            "modality": "mammogram",
            "data": {"root": "x", "image_size": 224, "resize": 256},
        }
    )
    spec = base_spec(recipe)
    assert spec.pixel_size is None and spec.pixel_unit == "mm"
    measured = with_measured_resolution(spec, [_canvas(200.0, (1024, 1024))] * 3)
    assert measured.pixel_size == pytest.approx(0.2 * 1024 / 256)  # 0.8 mm per network pixel


@pytest.mark.parametrize(
    "prepared",
    [
        [_canvas(0.492, (460, 700))] * 2,  # stretched unequally along the two axes
        [_canvas(200.0, (1024, 1024)), _canvas(200.0, (900, 1024))],  # boxes differ (crop)
        [_canvas(0.492, (460, 460)), _canvas(0.197, (460, 460))],  # magnifications differ
        [_canvas(None, (512, 512))] * 2,  # resolution unknown
    ],
)
def test_no_single_resolution_means_none_not_a_guess(prepared):
    spec = base_spec(load_recipe({"name": "h", "data": {"root": "x", "image_size": 64}}))
    assert with_measured_resolution(spec, prepared).pixel_size is None


def test_resampling_an_image_of_unknown_resolution_is_refused_naming_it(tmp_path):
    path = tmp_path / "unnamed_tile.png"
    cv2.imwrite(str(path), np.full((40, 40, 3), 128, np.uint8))
    spec = base_spec(
        load_recipe({"name": "h", "data": {"root": "x", "image_size": 32, "pixel_size": 0.5}})
    )
    with pytest.raises(DatasetError, match="unnamed_tile.png.*pixel size is unknown"):
        prepare_image(Sample(str(path), "benign", "p"), spec)
