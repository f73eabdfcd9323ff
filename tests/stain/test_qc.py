"""QC flags blur, missing tissue, pen ink and clipping, with configurable thresholds."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.stain import QCConfig, QCResult, assess_quality, tissue_mask


@pytest.fixture(scope="module")
def sharp(he_target) -> np.ndarray:
    return he_target


def test_sharp_tissue_image_passes(sharp):
    result = assess_quality(sharp)
    assert isinstance(result, QCResult)
    assert result.passed and result.reasons == ()
    assert result.blur_score > 75 and result.tissue_fraction > 0.4


def test_blurred_image_fails_as_blurry(sharp):
    result = assess_quality(cv2.GaussianBlur(sharp, (0, 0), 6))
    assert not result.passed
    assert result.blur_score < 75
    assert any(r.startswith("blurry") for r in result.reasons)


def test_blank_image_fails_for_lack_of_tissue():
    result = assess_quality(np.full((128, 128, 3), 245, np.uint8))
    assert result.tissue_fraction == 0.0
    assert any(r.startswith("little tissue") for r in result.reasons)


def test_blue_marker_ink_is_detected(sharp):
    inked = sharp.copy()
    inked[:128, :] = (30, 70, 200)
    result = assess_quality(inked)
    assert result.pen_fraction >= 0.24
    assert any(r.startswith("pen marks") for r in result.reasons)


def test_haematoxylin_purple_is_not_ink():
    purple = np.zeros((64, 64, 3), np.uint8)
    purple[:] = (79, 74, 141)
    assert assess_quality(purple).pen_fraction == 0.0


def test_clipped_pixels_fail_the_exposure_check(sharp):
    clipped = sharp.copy()
    clipped[:, :256] = (255, 0, 40)
    result = assess_quality(clipped)
    assert result.saturation_fraction >= 0.49
    assert any(r.startswith("over/under-exposed") for r in result.reasons)


def test_thresholds_are_configurable(sharp):
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    assert assess_quality(blurred, QCConfig(blur_threshold=0.0)).passed
    assert not assess_quality(sharp, QCConfig(min_tissue_fraction=1.0)).passed


def test_tissue_mask_uses_background_threshold():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = 219
    image[0, 1] = 220
    image[1] = 250
    mask = tissue_mask(image, background_threshold=220)
    assert mask.tolist() == [[True, False], [False, False]]


def test_config_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        QCConfig().blur_threshold = 1.0  # type: ignore[misc]
    with pytest.raises(InvalidInputError):
        QCConfig(min_tissue_fraction=1.5)


def test_grayscale_input_is_accepted():
    gray = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (64, 1))
    result = assess_quality(gray)
    assert 0.0 <= result.tissue_fraction <= 1.0


def test_float_tensor_holding_0_to_255_is_refused_not_read_as_white(sharp):
    import torch

    pixels = torch.from_numpy(sharp).permute(2, 0, 1).float()  # 0-255, not the [0, 1] contract
    with pytest.raises(InvalidInputError, match=r"divide 0-255 pixels by 255"):
        assess_quality(pixels)
    assert assess_quality(pixels / 255.0).passed


@pytest.mark.parametrize("blur_threshold", [float("nan"), float("inf"), -1.0])
def test_blur_threshold_must_be_a_finite_non_negative_number(blur_threshold):
    with pytest.raises(InvalidInputError, match="blur_threshold"):
        QCConfig(blur_threshold=blur_threshold)


@pytest.mark.parametrize(
    ("field", "value"),
    [("background_threshold", 300), ("min_tissue_fraction", 1.5), ("pen_min_saturation", -1)],
)
def test_a_bad_threshold_error_names_that_field_alone(field, value):
    with pytest.raises(InvalidInputError) as raised:
        QCConfig(**{field: value})
    message = str(raised.value)
    assert f"QCConfig.{field} must be" in message and str(value) in message
    others = {f.name for f in dataclasses.fields(QCConfig)} - {field}
    assert not any(other in message for other in others)
