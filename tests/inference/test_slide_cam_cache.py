"""A slide's CAM is kept beside its cached heatmap, costs one forward per tile, and takes the
CAM options (``--cam-tta``, Score-CAM's) on a tiled image as on a whole one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from slide_fixtures import MODEL_UM, register_tiny, tissue_slide, write_slide

from napari_pathreview.inference import Predictor
from napari_pathreview.inference.analysis import (
    AnalysisRequest,
    AnalysisResult,
    analyse,
    default_loader,
)
from napari_pathreview.inference.layer_slide import as_slide
from napari_pathreview.inference.slide_cam import iter_slide_cam
from napari_pathreview.inference.slides import SlideSettings, plan_grid
from napari_pathreview.io import load_image


class ForwardCounter:
    """Loads the registered model as the dock does and counts its forward passes (a real
    forward hook on the real model)."""

    def __init__(self) -> None:
        self.forwards = 0

    def load(self, ref: str, device: str) -> tuple[Any, Any]:
        model, card = default_loader(ref, device)
        model.register_forward_hook(self._count)
        return model, card

    def _count(self, module: Any, inputs: Any, output: Any) -> None:
        self.forwards += 1


@pytest.fixture
def slide(tmp_path: Path) -> Path:
    return write_slide(tmp_path / "s.tif", tissue_slide(256, 384))


def _analyse(ref: str, slide: Path, counter: ForwardCounter, **request: Any) -> AnalysisResult:
    levels = load_image(slide).levels
    settings = {"device": "cpu", "tta": "none", "qc": False, **request}
    steps = analyse(
        AnalysisRequest(model_ref=ref, **settings),
        levels,
        modality="histology",
        load_model=counter.load,
        um_per_px=0.25,
    )
    return next(item for item in steps if isinstance(item, AnalysisResult))


def test_pressing_run_again_on_a_slide_shows_its_cam_from_the_cache(registry, slide) -> None:
    ref = register_tiny(registry)
    first_run, second_run = ForwardCounter(), ForwardCounter()
    first = _analyse(ref, slide, first_run)
    second = _analyse(ref, slide, second_run)
    assert first_run.forwards > 0 and first.cam.cam.max() > 0.0
    assert second_run.forwards == 0  # neither the heatmap nor the CAM ran the model again
    np.testing.assert_array_equal(second.cam.cam, first.cam.cam)
    assert (second.cam.method, second.cam.target_class, second.cam.target_label) == (
        first.cam.method,
        first.cam.target_class,
        first.cam.target_label,
    )
    assert second.cam.scale == first.cam.scale and second.cam.level == first.cam.level


@pytest.mark.parametrize(
    ("change", "explained"),
    [
        ({"target_class": "benign"}, ("gradcam", "benign")),
        ({"cam_method": "gradcam++"}, ("gradcam++", "malignant")),
    ],
    ids=["class", "method"],
)
def test_another_target_class_or_method_explains_the_slide_afresh(
    registry, slide, change: dict, explained: tuple
) -> None:
    ref = register_tiny(registry)
    first = _analyse(ref, slide, ForwardCounter(), target_class="malignant")
    again = ForwardCounter()
    other = _analyse(ref, slide, again, **{"target_class": "malignant", **change})
    assert again.forwards > 0  # the heatmap came from the cache; the new CAM did not
    assert (other.cam.method, other.cam.target_label) == explained
    assert not np.array_equal(other.cam.cam, first.cam.cam)


def _plan(predictor: Predictor, slide: Path) -> tuple[Any, Any, Any]:
    source, settings = as_slide(slide), SlideSettings()
    return source, plan_grid(source, predictor.spec.hw, settings, MODEL_UM), settings


def _slide_cam(
    predictor: Predictor,
    slide: Path,
    explainer: Any = None,
    method: str = "gradcam",
    **cam_options: Any,
) -> list:
    """Every event of the slide CAM of class 1, the ``TiledCam`` last."""
    source, grid, settings = _plan(predictor, slide)
    options = {"cam_options": cam_options} if cam_options else {}
    return list(
        iter_slide_cam(predictor, source, grid, settings, 1, method, None, explainer, **options)
    )


def _two_pass_explainer(predictor: Predictor, tta: str = "none"):
    """The reference: classify the tiles as the heatmap does, then Grad-CAM them."""
    from dataclasses import replace

    from napari_pathreview.explain.cams import compute_cam
    from napari_pathreview.inference.prefetch import forward_tiles

    spec = replace(predictor.spec, resize=None, crop="none")

    def explain(tiles, cancel):
        probs = forward_tiles(predictor, tiles)[:, 1]
        maps = compute_cam(predictor.model, predictor.prepare(tiles, spec), "gradcam", 1, tta)
        return maps * probs[:, None, None]

    return explain


def test_a_slide_cam_runs_each_tile_through_the_model_once(registry, slide) -> None:
    """Grad-CAM's forward gives the logits; the tiles used to be classified a second time."""
    predictor = Predictor.from_registry(register_tiny(registry), device="cpu", batch_size=8)
    inputs: list[int] = []
    hook = predictor.model.register_forward_hook(lambda m, i, out: inputs.append(out.shape[0]))
    events = _slide_cam(predictor, slide)
    hook.remove()
    tiles = events[-2].total  # the last Progress: tiles explained
    assert tiles > 8 and sum(inputs) == tiles
    assert len(inputs) == -(-tiles // 8)  # one forward per batch of 8
    reference = _slide_cam(predictor, slide, _two_pass_explainer(predictor))[-1]
    np.testing.assert_allclose(events[-1].cam, reference.cam, atol=1e-5)


@pytest.mark.parametrize("cam_tta", ["none", "flips"])
def test_a_slide_cam_weights_tiles_by_the_heatmaps_probabilities_under_tta(
    registry, slide, cam_tta: str
) -> None:
    """With prediction TTA on, the tiles are weighted by the heatmap's flips-averaged
    probabilities, whether the CAM's own views are the same (``flips``) or not (``none``)."""
    ref = register_tiny(registry)
    predictor = Predictor.from_registry(ref, device="cpu", batch_size=8, tta="flips")
    cam = _slide_cam(predictor, slide, tta=cam_tta)[-1]
    reference = _slide_cam(predictor, slide, _two_pass_explainer(predictor, cam_tta))[-1]
    np.testing.assert_allclose(cam.cam, reference.cam, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "flags", "options"),
    [
        ("gradcam", ["--cam-tta", "flips"], {"tta": "flips"}),
        ("scorecam", ["--scorecam-top-k", "1"], {"top_k": 1}),
    ],
    ids=["cam-tta", "scorecam-top-k"],
)
def test_predict_explains_a_tiled_image_under_the_cam_options(
    registry, slide, tmp_path, method: str, flags: list, options: dict
) -> None:
    """They used to be dropped for a tiled image: the map was the one without them."""
    from napari_pathreview.cli import main

    ref = register_tiny(registry)
    out = tmp_path / "out"
    argv = ["predict", str(slide), "--model", ref, "--device", "cpu", "--cam", method]
    assert main([*argv, "--target-class", "malignant", *flags, "--out", str(out)]) == 0
    cam = np.load(out / f"{slide.stem}_{method}.npy")
    predictor = Predictor.from_registry(ref, device="cpu")
    expected = _slide_cam(predictor, slide, None, method, **options)[-1]
    np.testing.assert_allclose(cam, expected.cam, atol=1e-5)
