"""Predictor: equals a plain forward, decides at the card's threshold, TTA, cancel, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_pathreview.errors import InvalidInputError, ModelNotFoundError
from napari_pathreview.inference import DeviceUnavailableError, Prediction, Predictor, Progress
from napari_pathreview.inference.device import resolve_device
from napari_pathreview.registry import ModelRegistry


def _plain_probs(registry: ModelRegistry, images: list[np.ndarray]) -> np.ndarray:
    model = registry.load("tiny")
    mean = torch.tensor(model.card.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.card.std).view(1, 3, 1, 1)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return torch.softmax(model((x - mean) / std), dim=1).numpy()


def test_predictions_equal_plain_forward(registry, binary_ref, rng, tissue_like) -> None:
    images = [tissue_like(rng, 64, 64) for _ in range(5)]
    predictor = Predictor.from_registry(
        binary_ref, device="cpu", stain="none", tta="none", batch_size=2
    )
    got = np.array([list(p.probabilities.values()) for p in predictor.predict(images)])
    np.testing.assert_allclose(got, _plain_probs(registry, images), atol=1e-5)


def test_binary_decision_uses_card_threshold(binary_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(binary_ref, device="cpu")
    predictions = predictor.predict([tissue_like(rng, 64, 64) for _ in range(6)])
    for p in predictions:
        assert p.threshold == 0.3
        assert p.label == ("malignant" if p.probabilities["malignant"] >= 0.3 else "benign")
        assert p.model == "tiny@1" and p.stain == "none" and p.tta == "none"


def test_multiclass_decision_is_argmax(subtype_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(subtype_ref, device="cpu")
    for p in predictor.predict([tissue_like(rng, 64, 64) for _ in range(4)]):
        assert p.threshold is None
        assert p.label == max(p.probabilities, key=p.probabilities.get)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_d4_tta_is_invariant_to_rotation(binary_ref, rng, tissue_like) -> None:
    image = tissue_like(rng, 64, 64)
    predictor = Predictor.from_registry(binary_ref, device="cpu", tta="d4")
    upright, turned = predictor.predict([image, np.ascontiguousarray(np.rot90(image))])
    for name in upright.probabilities:
        assert turned.probabilities[name] == pytest.approx(upright.probabilities[name], abs=1e-5)


def test_without_tta_rotation_changes_the_output(binary_ref, rng, tissue_like) -> None:
    image = tissue_like(rng, 64, 64)
    predictor = Predictor.from_registry(binary_ref, device="cpu", tta="none")
    upright, turned = predictor.predict([image, np.ascontiguousarray(np.rot90(image))])
    assert upright.probabilities["malignant"] != pytest.approx(
        turned.probabilities["malignant"], abs=1e-6
    )


def test_a_card_fitted_under_d4_predicts_under_d4_unless_told_otherwise(
    registry, binary_ref, rng, tissue_like
) -> None:
    from dataclasses import replace

    model = registry.load("tiny")
    card = replace(model.card, tta="d4")
    image = tissue_like(rng, 64, 64)
    by_card = Predictor(model, card, device="cpu")
    upright, turned = by_card.predict([image, np.ascontiguousarray(np.rot90(image))])
    assert by_card.tta == upright.tta == "d4"
    assert turned.probabilities["malignant"] == pytest.approx(
        upright.probabilities["malignant"], abs=1e-5
    )
    assert Predictor(model, card, device="cpu", tta="none").predict([image])[0].tta == "none"


def test_images_are_resized_to_the_card_input(binary_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(binary_ref, device="cpu")
    (p,) = predictor.predict([tissue_like(rng, 130, 90)])
    assert set(p.probabilities) == {"benign", "malignant"}


def test_paths_are_decoded_and_qc_flagged(binary_ref, rng, tmp_path, tissue_like) -> None:
    import cv2

    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), tissue_like(rng, 80, 80)[:, :, ::-1])
    (p,) = Predictor.from_registry(binary_ref, device="cpu").predict([path])
    assert p.path == str(path)
    assert p.qc is not None and isinstance(p.qc.passed, bool)


def test_card_stain_target_is_applied_and_can_be_overridden(
    registry, binary_ref, rng, binary_card, tissue_like
) -> None:
    from napari_pathreview.stain import REINHARD_BREAKHIS_PRESET

    card = {
        **binary_card,
        "name": "stained",
        "stain_method": "reinhard",
        "stain_target": dict(REINHARD_BREAKHIS_PRESET),
    }
    registry.register(registry.load("tiny"), card)
    image = tissue_like(rng, 64, 64)
    stained = Predictor.from_registry("stained", device="cpu")
    plain = Predictor.from_registry("stained", device="cpu", stain="none")
    assert (stained.stain_name, plain.stain_name) == ("reinhard", "none")
    (a,), (b,) = stained.predict([image]), plain.predict([image])
    assert a.stain == "reinhard"
    assert a.probabilities["malignant"] != pytest.approx(b.probabilities["malignant"], abs=1e-6)


def test_unfitted_stain_override_is_a_clear_error(binary_ref) -> None:
    with pytest.raises(InvalidInputError, match="fitted target"):
        Predictor.from_registry(binary_ref, device="cpu", stain="macenko")


def test_iter_predict_yields_progress_then_predictions(binary_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(binary_ref, device="cpu", batch_size=2)
    items = list(predictor.iter_predict([tissue_like(rng, 64, 64) for _ in range(5)]))
    assert isinstance(items[0], Progress) and items[0].total == 5
    assert sum(isinstance(i, Prediction) for i in items) == 5
    assert items[-1] == Progress(5, 5, "done")


def test_cancel_stops_iter_predict(binary_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(binary_ref, device="cpu", batch_size=2)
    cancel = threading.Event()
    seen: list[object] = []
    for item in predictor.iter_predict([tissue_like(rng, 64, 64) for _ in range(8)], cancel):
        seen.append(item)
        if isinstance(item, Prediction):
            cancel.set()
    assert sum(isinstance(i, Prediction) for i in seen) == 2
    assert seen[-1].cancelled is True


def test_missing_model_is_a_clear_error() -> None:
    with pytest.raises(ModelNotFoundError, match="nope"):
        Predictor.from_registry("nope@1", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_requested_but_unavailable_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_and_tta_are_rejected(binary_ref) -> None:
    with pytest.raises(InvalidInputError, match="device"):
        Predictor.from_registry(binary_ref, device="tpu")
    with pytest.raises(InvalidInputError, match="TTA"):
        Predictor.from_registry(binary_ref, device="cpu", tta="d8")


class _OomAboveTwo(torch.nn.Module):
    """A real model that, like a GPU, runs out of memory above a batch of 2."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_and_goes_on(registry, binary_ref, rng, tissue_like) -> None:
    model = registry.load("tiny")
    wrapped = _OomAboveTwo(model)
    predictor = Predictor(wrapped, model.card, device="cpu", batch_size=8)
    predictions = predictor.predict([tissue_like(rng, 64, 64) for _ in range(7)])
    assert len(predictions) == 7
    assert predictor.batch_size == 2
    assert wrapped.batches[:3] == [7, 4, 2]  # 8 → 4 → 2, then on at 2


class _RecordsBatches(torch.nn.Module):
    """A real model that notes how many inputs each forward receives."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)


def test_batch_size_counts_tta_views_so_forwards_never_grow(
    registry, binary_ref, rng, tissue_like
) -> None:
    model = registry.load("tiny")
    images = [tissue_like(rng, 64, 64) for _ in range(5)]
    wrapped = _RecordsBatches(model)
    small = Predictor(wrapped, model.card, device="cpu", tta="d4", batch_size=16)
    large = Predictor(model, model.card, device="cpu", tta="d4", batch_size=64)
    by_small = small.predict(images)
    assert wrapped.batches == [16, 16, 8]  # 2 + 2 + 1 images, 8 views each
    for a, b in zip(by_small, large.predict(images), strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_explain_returns_cam_at_image_resolution(binary_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(binary_ref, device="cpu")
    image = tissue_like(rng, 100, 80)
    result = predictor.explain(image, "gradcam")
    assert result.cam.shape == (100, 80) and result.cam.dtype == np.float32
    assert result.cam.min() >= 0.0 and result.cam.max() <= 1.0
    (p,) = predictor.predict([image])
    assert result.target_label == p.label


def test_explain_chosen_class_by_name(binary_ref, rng, tissue_like) -> None:
    predictor = Predictor.from_registry(binary_ref, device="cpu")
    result = predictor.explain(tissue_like(rng, 64, 64), "gradcam++", target_class="benign")
    assert result.target_class == 0 and result.method == "gradcam++"
    with pytest.raises(InvalidInputError, match="unknown class"):
        predictor.explain(tissue_like(rng, 64, 64), "gradcam", target_class="other")


def _recipe_card(binary_card: dict) -> dict:
    recipe = {"data": {"image_size": 64, "resize": 80, "crop": "none"}}
    return {**binary_card, "name": "recipe", "recipe": recipe}


def test_recipe_cards_are_fed_like_training_evaluation(
    registry, binary_ref, rng, binary_card, tissue_like
) -> None:
    import cv2

    from napari_pathreview.training.datasets import build_transform

    registry.register(registry.load("tiny"), _recipe_card(binary_card))
    image = tissue_like(rng, 90, 120)
    (p,) = Predictor.from_registry("recipe", device="cpu").predict([image])
    model = registry.load("recipe")
    card = model.card
    resized = cv2.resize(image, (80, 80), interpolation=cv2.INTER_AREA)
    transform = build_transform(None, 64, card.mean, card.std, train=False)
    x = transform(torch.from_numpy(resized).permute(2, 0, 1))[None]
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)[0].numpy()
    np.testing.assert_allclose(list(p.probabilities.values()), expected, atol=1e-5)


def test_recipe_card_cam_explains_the_whole_image_not_only_the_centre_crop(
    registry, binary_ref, rng, binary_card, tissue_like
) -> None:
    import cv2

    from napari_pathreview.explain.cams import compute_cam

    registry.register(registry.load("tiny"), _recipe_card(binary_card))
    predictor = Predictor.from_registry("recipe", device="cpu")
    image = tissue_like(rng, 100, 100)
    result = predictor.explain(image)

    whole = predictor.spec.uncropped()
    assert whole.hw == (80, 80) and whole.resize is None
    with torch.inference_mode():
        x = predictor.prepare([image], whole)
    cam = compute_cam(predictor.model, x, "gradcam", target_class=result.target_class)[0]
    expected = np.clip(cv2.resize(cam, (100, 100), interpolation=cv2.INTER_LINEAR), 0, 1)
    assert result.cam.shape == (100, 100)
    np.testing.assert_allclose(result.cam, expected, atol=1e-5)
