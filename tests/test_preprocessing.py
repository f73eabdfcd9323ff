"""One preprocessing spec: training's evaluation path and ``Predictor.prepare`` give one tensor.

The expected tensor is written out here step by step from the spec's numbers (OpenCV resize,
numpy padding and slicing, numpy normalisation), not by calling the code under test.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from napari_pathreview.inference import Predictor
from napari_pathreview.inference.preprocess import decode
from napari_pathreview.models import create_model
from napari_pathreview.preprocessing import PreprocessSpec, PreprocessSpecError, plan
from napari_pathreview.registry import ModelRegistry
from napari_pathreview.training.datasets import ImageDataset, Sample, eval_transform, prepare_image
from napari_pathreview.training.preparation import stain_images

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _register(spec: dict, modality: str, name: str) -> str:
    torch.manual_seed(0)
    card = {
        "name": name,
        "architecture": "resnet18",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": modality,
        "preprocess": spec,
    }
    return f"{name}@{ModelRegistry().register(create_model('resnet18', 2), card)}"


def _training_tensor(path, spec: PreprocessSpec) -> torch.Tensor:
    """Training's evaluation path: cached canvas → fold stain → evaluation transform."""
    prepared = stain_images(
        [prepare_image(Sample(str(path), "benign", "p1"), spec)], spec.stain_target
    )
    return ImageDataset(prepared, [0], transform=eval_transform(spec))[0][0]


def _predictor_tensor(path, ref: str) -> torch.Tensor:
    predictor = Predictor.from_registry(ref, device="cpu")
    decoded = decode(path, min_side=min(predictor.spec.hw))
    return predictor.prepare([decoded.rgb], um_per_px=[decoded.um_per_px])[0]


def _normalised(window: np.ndarray) -> np.ndarray:
    x = window.astype(np.float32) / np.float32(255.0)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return x.transpose(2, 0, 1)


def _tissue(rng, h: int, w: int) -> np.ndarray:
    base = np.array([180, 110, 160], np.float32)
    smooth = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 2)
    return np.clip(base + smooth, 0, 230).astype(np.uint8)


def test_histology_training_evaluation_and_predictor_build_the_same_tensor(tmp_path):
    from napari_pathreview.stain import REINHARD_BREAKHIS_PRESET, normalizer_from_dict

    rgb = _tissue(np.random.default_rng(0), 115, 175)
    # A BreaKHis 400X patch saved at 175 px wide: 0.0492 µm/px × 700 / 175 = 0.1968 µm/px.
    path = tmp_path / "SOB_B_A-14-22549AB-400-001.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    target = dict(REINHARD_BREAKHIS_PRESET)
    spec = {
        "input_size": [3, 48, 48],
        "resize": 56,
        "pixel_size": 0.5,
        "pixel_unit": "um",
        "padding": "reflect",
        "stain_method": "reinhard",
        "stain_target": target,
    }
    ref = _register(spec, "histology", "histo")
    card_spec = ModelRegistry().card("histo").preprocess

    # expected, from the numbers: resample to 0.5 µm/px (area: it shrinks), centre on the
    # 56 px canvas (cut across, mirrored top and bottom), stain, centre 48 px, normalise
    factor = 0.0492 * 700 / 175 / 0.5
    h, w = round(115 * factor), round(175 * factor)  # 45 × 69
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    top = (56 - h) // 2
    cut = (w - 56) // 2
    canvas = np.pad(small[:, cut : cut + 56], ((top, 56 - h - top), (0, 0), (0, 0)), "symmetric")
    canvas = normalizer_from_dict(target).transform(canvas)
    expected = torch.from_numpy(_normalised(canvas[4:52, 4:52]))

    training = _training_tensor(path, card_spec)
    predicted = _predictor_tensor(path, ref)
    assert training.shape == predicted.shape == (3, 48, 48)
    torch.testing.assert_close(training, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(predicted, expected, atol=1e-6, rtol=0)


def test_images_of_unknown_resolution_are_stretched_not_guessed(tmp_path):
    """An array without a known µm/px cannot be resampled: it is fitted like a first-wave card."""
    rgb = _tissue(np.random.default_rng(2), 70, 90)
    ref = _register({"input_size": [3, 32, 32], "pixel_size": 0.5}, "histology", "plain")
    predictor = Predictor.from_registry(ref, device="cpu")
    x = predictor.prepare([rgb])[0]
    stretched = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA)
    torch.testing.assert_close(x, torch.from_numpy(_normalised(stretched)), atol=1e-6, rtol=0)


def test_the_spec_names_a_bad_field():
    with pytest.raises(PreprocessSpecError, match="padding"):
        PreprocessSpec(input_size=(3, 8, 8), padding="wrap")
    with pytest.raises(PreprocessSpecError, match="channels"):
        PreprocessSpec(input_size=(1, 8, 8), mean=(0.5,), std=(0.2,), channels="rgb")
    with pytest.raises(PreprocessSpecError, match="unknown preprocessing"):
        PreprocessSpec.from_dict({"input_size": [3, 8, 8], "mpp": 0.5})


def _film(rng) -> tuple[np.ndarray, np.ndarray]:
    """A 'mammogram' (grey breast on black film with a bright label) and its breast mask."""
    grey = np.zeros((256, 256), np.uint8)
    grey[40:200, 10:110] = rng.integers(60, 220, (160, 100), dtype=np.uint8)
    grey[230:240, 200:220] = 255  # a film label: bright but smaller, not the breast
    breast = np.zeros(grey.shape, bool)
    breast[40:200, 10:110] = True
    return grey, breast


def _stretched(grey: np.ndarray, breast: np.ndarray) -> np.ndarray:
    """The "breast" rule from its numbers: 2nd percentile → 16, 99.8th → 255, outside → 0."""
    low, high = np.percentile(grey[breast], [2.0, 99.8])
    values = np.clip(16 + (grey.astype(np.float32) - low) * 239 / (high - low), 0, 255)
    return np.where(breast, np.rint(values), 0).astype(np.uint8)


def test_breast_intensity_maps_every_film_exposure_to_one_range_and_drops_the_label():
    from napari_pathreview.preprocessing import normalise_intensity

    grey, breast = _film(np.random.default_rng(3))
    out = normalise_intensity(np.repeat(grey[..., None], 3, axis=2), "breast")
    assert out[235, 210].tolist() == [0, 0, 0]  # the film label is not breast
    np.testing.assert_array_equal(out[..., 0], _stretched(grey, breast))
    # the same breast on a darker film (lower exposure): after the rule, nearly the same pixels
    darker = np.where(breast, np.rint(grey * 0.7 + 10), grey).astype(np.uint8)
    again = normalise_intensity(np.repeat(darker[..., None], 3, axis=2), "breast")
    assert np.abs(again.astype(int) - out.astype(int))[breast].max() <= 2
    assert np.abs(darker.astype(int) - grey.astype(int))[breast].max() > 50
    flat = np.full((32, 32, 3), 120, np.uint8)  # no contrast to stretch: left as it is
    np.testing.assert_array_equal(normalise_intensity(flat, "breast"), flat)


@pytest.mark.parametrize("intensity", ["none", "breast"])
def test_mammogram_training_evaluation_predictor_and_lesion_patches_see_the_same_pixels(
    tmp_path, intensity
):
    from napari_pathreview.training.lesion import prepare_lesion_image

    grey, breast = _film(np.random.default_rng(1))
    path = tmp_path / "mdb001.png"  # mini-MIAS at 256 px: 0.2 mm × 1024 / 256 = 0.8 mm/px
    cv2.imwrite(str(path), grey)
    spec = {
        "input_size": [3, 48, 48],
        "resize": 56,
        "crop": "breast",
        "channels": "grey_to_rgb",
        "pixel_size": 2.0,
        "pixel_unit": "mm",
        "padding": "constant",
        "intensity": intensity,
    }
    ref = _register(spec, "mammogram", f"mammo-{intensity}")
    card_spec = ModelRegistry().card(f"mammo-{intensity}").preprocess
    assert card_spec.intensity == intensity

    # expected: the intensity rule first; then the breast box (rows 40-200, cols 10-110)
    # resampled to 2 mm/px = ×0.4, 64 × 40 px, centred on a black 56 px canvas (cut in
    # height), centre 48 px, normalised
    source = _stretched(grey, breast) if intensity == "breast" else grey
    small = cv2.resize(source[40:200, 10:110], (40, 64), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((56, 56), np.uint8)
    canvas[:, 8:48] = small[4:60]
    expected = torch.from_numpy(_normalised(np.repeat(canvas[4:52, 4:52, None], 3, axis=2)))
    torch.testing.assert_close(_training_tensor(path, card_spec), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(_predictor_tensor(path, ref), expected, atol=1e-6, rtol=0)

    # lesion training draws its patches from the image after the same rule, then resampled
    sample = Sample(str(path), "normal", "1")
    lesion = prepare_lesion_image(sample, 0, 0.5, "mammogram", intensity)
    resampled = cv2.resize(source, (128, 128), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(lesion.pixels[..., 0], resampled)


def test_size_rule_refuses_an_image_under_a_few_pixels() -> None:
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.preprocessing import MIN_IMAGE_SIDE, size_warning

    spec = PreprocessSpec(input_size=(3, 224, 224))
    side = MIN_IMAGE_SIDE - 1
    with pytest.raises(InvalidInputError, match=rf"{side}×300 px: too small to classify"):
        size_warning(plan((side, 300, 3), (0, side, 0, 300), spec), spec)


def test_size_rule_warns_when_the_model_would_enlarge_the_image_heavily() -> None:
    from napari_pathreview.preprocessing import size_warning

    spec = PreprocessSpec(input_size=(3, 224, 224))
    assert size_warning(plan((100, 100, 3), (0, 100, 0, 100), spec), spec) is None  # 2.2×
    text = size_warning(plan((40, 40, 3), (0, 40, 0, 40), spec), spec)
    assert text is not None and "enlarged 6× to the model's 224×224 input" in text


def test_size_rule_measures_physical_upsampling_against_the_cards_um_per_px() -> None:
    from napari_pathreview.preprocessing import size_warning

    spec = PreprocessSpec(input_size=(3, 224, 224), pixel_size=0.5, pixel_unit="um")
    big = (2000, 2000, 3)  # plenty of pixels, but at 2.5 µm/px for a 0.5 µm/px model: 5×
    text = size_warning(plan(big, (0, 2000, 0, 2000), spec, um_per_px=2.5), spec)
    assert text is not None and "to the card's 0.5 um/px" in text
    assert size_warning(plan(big, (0, 2000, 0, 2000), spec, um_per_px=0.5), spec) is None


def test_a_dicom_mammogram_is_resampled_to_the_cards_mm_per_pixel_from_its_pixel_spacing(
    dicom_factory,
) -> None:
    film = np.zeros((400, 300), np.uint16)
    film[50:350, :200] = 3000  # the breast against a black background
    path = dicom_factory("L_CC.dcm", film, spacing=(0.25, 0.25))
    decoded = decode(path)
    assert decoded.um_per_px == pytest.approx(250.0)
    spec = PreprocessSpec(input_size=(3, 64, 64), pixel_size=1.0, pixel_unit="mm")
    placement = plan(decoded.rgb.shape, (0, 400, 0, 300), spec, decoded.um_per_px)
    assert placement.scaled == (100, 75)  # 100 mm × 75 mm at 1 mm per network pixel
