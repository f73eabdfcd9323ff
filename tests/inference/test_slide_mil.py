"""A lesion-aware (patch MIL) model on a slide: patch-sized tiles, and the slide as one bag."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from slide_fixtures import MODEL_UM, register_tiny, tissue_slide, write_slide

from napari_pathreview.inference import Predictor
from napari_pathreview.inference.large_images import prediction_from_tiled
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slides import SlideSettings, predict_slide
from napari_pathreview.models import create_model

PATCH = 32
CLASSES = ["normal", "tumour"]


def _register_patch_mil(registry, pooling: str, members: int = 1) -> str:
    torch.manual_seed(0)
    model = create_model(
        "patch_mil",
        2,
        encoder="test_resnet",
        patch_size=PATCH,
        stride=PATCH,
        pooling=pooling,
        input_size=128,
        negative_class=None if pooling == "attention" else 0,
        members=members,
    ).eval()
    name = f"lesion-{pooling}-x{members}"
    card = {
        "name": name,
        "task": "binary",
        "classes": CLASSES,
        "modality": "histology",
        "stain_method": "none",
        "preprocess": {"input_size": [3, 128, 128], "pixel_size": MODEL_UM, "pixel_unit": "um"},
    }
    return f"{name}@{registry.register(model, card)}"


def _expected_bag(model, level1: np.ndarray, rows, cols):
    """The head over every tile's embedding, tiles cut by hand from the 0.5 µm/px level."""
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std).view(1, 3, 1, 1)
    tiles = np.stack(
        [
            level1[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH]
            for r, c in zip(rows, cols, strict=True)
        ]
    )
    x = (torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        out = model.head(model.embed(x).unsqueeze(0))
    return torch.softmax(out.logits, 1)[0].numpy(), out.attention[0].numpy()


@pytest.mark.parametrize(("pooling", "members"), [("attention", 1), ("topk", 1), ("topk", 2)])
def test_a_slide_is_one_bag_of_all_its_tissue_patches(tmp_path, registry, pooling, members):
    ref = _register_patch_mil(registry, pooling, members)  # members=2: a fold ensemble
    predictor = Predictor.from_registry(ref, device="cpu", batch_size=16, channels_last=False)
    path = write_slide(tmp_path / "slide.tif", tissue_slide(512, 768), um_per_px=0.25)

    result = predict_slide(predictor, as_slide(path), SlideSettings(min_tissue=0.2))

    # tiles are one patch at the model's 0.5 µm/px (level 1), not the 128-px whole-image input
    assert result.grid.tile_size == (PATCH, PATCH) and result.grid.level == 1
    assert result.grid.shape == (256 // PATCH, 384 // PATCH)
    n_tiles = len(result.tile_probabilities)
    assert 10 < n_tiles < result.grid.shape[0] * result.grid.shape[1]  # glass is skipped
    bag = result.bag
    assert bag.attention.shape == (n_tiles,) and np.isclose(bag.attention.sum(), 1.0)
    level1 = tifffile.imread(path, level=1)
    probs, attention = _expected_bag(predictor.model, level1, result.tile_rows, result.tile_cols)
    np.testing.assert_allclose(bag.probabilities, probs, atol=1e-4)
    np.testing.assert_allclose(bag.attention, attention, atol=1e-5)
    assert list(result.aggregate["mil"]) == CLASSES
    # the slide's decision is the model's own pooling, not the mean of tile probabilities
    decided = prediction_from_tiled(predictor, result)
    decided_probs = [decided.probabilities[name] for name in CLASSES]
    np.testing.assert_allclose(decided_probs, probs, atol=1e-4)


def test_the_slide_maps_and_the_bag_survive_the_result_cache(tmp_path, registry) -> None:
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.inference.cache import read_result, write_result
    from napari_pathreview.inference.slide_mil import slide_map

    ref = _register_patch_mil(registry, "attention")
    predictor = Predictor.from_registry(ref, device="cpu", batch_size=16, channels_last=False)
    path = write_slide(tmp_path / "slide.tif", tissue_slide(256, 384), um_per_px=0.25)
    result = predict_slide(predictor, as_slide(path))

    attention = slide_map(result, "attention_map", negative_class=0)
    assert attention.shape == result.grid.shape and attention.max() == pytest.approx(1.0)
    lesion = slide_map(result, "patch_map", negative_class=0)
    r, c = result.tile_rows[0], result.tile_cols[0]
    assert lesion[r, c] == pytest.approx(1.0 - result.tile_probabilities[0, 0])
    assert not lesion[~result.coverage].any()  # glass is not a lesion

    cached = read_result(write_result(tmp_path / "cache", result))
    np.testing.assert_array_equal(cached.bag.attention, result.bag.attention)
    assert cached.aggregate["mil"] == result.aggregate["mil"]
    np.testing.assert_array_equal(slide_map(cached, "attention_map", 0), attention)

    ordinary = predict_slide(
        Predictor.from_registry(register_tiny(registry), device="cpu"), as_slide(path)
    )
    assert ordinary.bag is None and "mil" not in ordinary.aggregate
    with pytest.raises(InvalidInputError, match="not a patch MIL model"):
        slide_map(ordinary, "attention_map", 0)


def test_analyse_shows_a_lesion_models_attention_over_a_slide_and_decides_by_its_bag(
    tmp_path, registry
) -> None:
    from napari_pathreview.inference.analysis import AnalysisRequest, AnalysisResult, analyse
    from napari_pathreview.io import load_image

    ref = _register_patch_mil(registry, "attention")
    image = load_image(write_slide(tmp_path / "s.tif", tissue_slide(512, 768)))
    request = AnalysisRequest(
        model_ref=ref, device="cpu", tta="none", qc=False, cam_method="attention_map"
    )
    result = list(analyse(request, image.levels, modality="histology", um_per_px=0.25))[-1]
    assert isinstance(result, AnalysisResult)
    tiled = result.tiled
    assert result.cam.method == "attention_map"
    assert result.cam.cam.shape == tiled.grid.shape  # one map pixel per grid cell …
    assert result.cam_scale == pytest.approx(tiled.grid.cell[0])  # … lying on level 0
    assert result.cam.cam.max() == pytest.approx(1.0)
    mil = [tiled.aggregate["mil"][name] for name in CLASSES]
    assert [result.probabilities[name] for name in CLASSES] == pytest.approx(mil)
