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


# ----- tissue only: glass neither blurs nor over-exposes a patch -------------------------------
#: a sharp, tissue-filled BreaKHis patch (Laplacian variance ≈ 104, above the default 75)
SHARP_PATCH = "breakhis/SOB_B_A-14-22549CD-40-007.png"


@pytest.fixture(scope="module")
def patch(shared_data) -> np.ndarray:
    from stain_testutils import read_rgb

    return read_rgb(shared_data / SHARP_PATCH)


def _beside_glass(rgb: np.ndarray, glass_fraction: float = 0.45) -> np.ndarray:
    """``rgb`` with blank glass (pure white, as scanners write it) added to its right."""
    height, width, _ = rgb.shape
    extra = round(width * glass_fraction / (1 - glass_fraction))
    return np.concatenate([rgb, np.full((height, extra, 3), 255, np.uint8)], axis=1)


def test_glass_beside_sharp_tissue_leaves_its_blur_score_and_verdict(patch):
    alone, padded = assess_quality(patch), assess_quality(_beside_glass(patch))
    assert padded.blur_score == pytest.approx(alone.blur_score, rel=0.02)
    assert padded.blur_score > 75
    assert not any(r.startswith("blurry") for r in padded.reasons)


def test_blurred_tissue_beside_glass_is_still_blurry(patch):
    result = assess_quality(_beside_glass(cv2.GaussianBlur(patch, (0, 0), 3)))
    assert any(r.startswith("blurry") for r in result.reasons)


def test_pure_white_glass_is_not_over_exposure(patch):
    result = assess_quality(_beside_glass(patch, glass_fraction=0.6))
    assert result.saturation_fraction == 0.0
    assert not any(r.startswith("over/under-exposed") for r in result.reasons)


def test_tissue_clipped_at_white_is_over_exposure(patch):
    """An exposure 1.6× too long saturates the red channel of the pink stroma."""
    bright = np.clip(patch.astype(np.float32) * 1.6, 0, 255).astype(np.uint8)
    result = assess_quality(bright)
    assert result.saturation_fraction > 0.25
    assert any(r.startswith("over/under-exposed") for r in result.reasons)


def test_an_image_without_tissue_has_no_blur_score_and_says_so():
    result = assess_quality(np.full((128, 128, 3), 245, np.uint8))
    assert result.blur_score is None and result.saturation_fraction == 0.0
    assert any(r.startswith("blur not measured") for r in result.reasons)
    assert not any(r.startswith("blurry") for r in result.reasons)


def test_a_speck_of_tissue_is_too_little_to_measure_blur_on(patch):
    glass = np.full((256, 256, 3), 255, np.uint8)
    glass[100:112, 100:112] = patch[:12, :12]  # 144 px of tissue
    assert assess_quality(glass).blur_score is None


def test_a_blur_threshold_of_zero_turns_the_blur_check_off_even_without_tissue():
    config = QCConfig(blur_threshold=0.0, min_tissue_fraction=0.0)
    assert assess_quality(np.full((64, 64, 3), 245, np.uint8), config).passed


# ----- over-exposure: washed-out tissue is not glass; red-clipped BreaKHis scans -----------------
#: a well-exposed BreaKHis image of grey-purple tissue: darkest 1 % at grey 137
GREY_PURPLE = "breakhis/SOB_B_A-14-22549AB-40-001.png"
#: the two BreaKHis scans whose eosin-stained tissue saturates the red channel
RED_CLIPPED = ("SOB_M_DC-14-2773-40-004.png", "SOB_M_MC-14-18842D-200-016.png")


def _longer_exposure(rgb: np.ndarray, factor: float) -> np.ndarray:
    """``rgb`` as a scan exposed ``factor``× too long: linear light scaled, clipped at white."""
    value = rgb / 255.0
    linear = np.where(value <= 0.04045, value / 12.92, ((value + 0.055) / 1.055) ** 2.4)
    linear = np.minimum(linear * factor, 1.0)
    value = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.rint(value * 255).astype(np.uint8)


def _lifted_tones(rgb: np.ndarray, gamma: float) -> np.ndarray:
    """``rgb`` with every tone lifted by a gamma below 1: paler, nothing clipped."""
    return np.rint(255 * (rgb / 255.0) ** gamma).astype(np.uint8)


@pytest.fixture(scope="module")
def grey_purple(shared_data) -> np.ndarray:
    from stain_testutils import read_rgb

    return read_rgb(shared_data / GREY_PURPLE)


@pytest.fixture(scope="module")
def breakhis_qc(shared_data) -> dict[str, QCResult]:
    """The verdict on every BreaKHis image in shared data, as scanned."""
    from stain_testutils import read_rgb

    paths = sorted((shared_data / "breakhis").glob("*.png"))
    return {path.name: assess_quality(read_rgb(path)) for path in paths}


def _washed_out(result: QCResult) -> bool:
    return any(r.startswith("over-exposed (washed out") for r in result.reasons)


def test_a_well_exposed_grey_purple_image_is_not_over_exposed(grey_purple):
    result = assess_quality(grey_purple)
    assert result.passed and result.dark_level < 175


def test_washed_out_grey_white_tissue_is_over_exposed_though_nothing_clips(grey_purple):
    """Lifted tones leave the tissue pale grey-white, as glass, with no channel at 255."""
    result = assess_quality(_lifted_tones(grey_purple, 0.4))
    assert result.saturation_fraction == 0.0
    assert _washed_out(result) and result.dark_level >= 175


def test_a_scan_exposed_twice_too_long_is_over_exposed_below_the_clipping_limit(grey_purple):
    result = assess_quality(_longer_exposure(grey_purple, 2.0))
    assert result.saturation_fraction < QCConfig().max_saturation_fraction
    assert _washed_out(result)


def test_the_washed_out_check_follows_its_threshold(grey_purple):
    washed = _lifted_tones(grey_purple, 0.4)
    assert not _washed_out(assess_quality(washed, QCConfig(washed_out_level=220)))  # off


def test_no_breakhis_image_as_scanned_is_washed_out_however_much_glass_it_shows(breakhis_qc):
    """The 64 images include glass-heavy fields (up to 63 % background) whose pale glass looks
    like washed-out tissue pixel by pixel; their tissue's nuclei keep the dark end dark."""
    assert len(breakhis_qc) == 64
    assert min(r.tissue_fraction for r in breakhis_qc.values()) < 0.4  # glass-heavy fields too
    assert [name for name, r in breakhis_qc.items() if _washed_out(r)] == []


def test_exactly_the_two_red_clipped_breakhis_scans_are_flagged_for_clipping(breakhis_qc):
    """Their pink stroma reads R=255 in 24.5 % / 35.7 % of the stained pixels, a pile-up 6-10×
    the counts at R=250-254 (a cut distribution, not a peak): real loss, and the reason says
    which channel."""
    clipped = {
        name: reason
        for name, result in breakhis_qc.items()
        for reason in result.reasons
        if reason.startswith("over/under-exposed")
    }
    assert sorted(clipped) == sorted(RED_CLIPPED)
    assert all("most: red at 255" in reason for reason in clipped.values())


def test_of_the_four_he_references_only_torchstain_source_is_flagged_and_for_its_blue_channel(
    shared_data,
):
    """torchstain's "source" tile reads B=255 in 27 % of its stained pixels, 4.8× the counts at
    B=250-254: its blue channel is cut off, so the flag is a real loss, not a false alarm."""
    from stain_testutils import read_rgb

    verdicts = {
        path.stem: assess_quality(read_rgb(path))
        for path in sorted((shared_data / "he_reference").glob("*.png"))
    }
    assert len(verdicts) == 4
    assert [name for name, result in verdicts.items() if not result.passed] == ["torchstain_source"]
    assert verdicts["torchstain_source"].checks == ("exposure",)
    assert "most: blue at 255" in verdicts["torchstain_source"].reasons[0]
    rgb = read_rgb(shared_data / "he_reference" / "torchstain_source.png")
    blue = rgb[..., 2][tissue_mask(rgb)]
    counts = np.bincount(blue, minlength=256)
    assert counts[255] > 3 * counts[250:255].mean()  # a cut distribution, not a peak at white
