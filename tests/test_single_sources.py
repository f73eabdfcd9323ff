"""Each choice users pick from (devices, CAM and stain methods, TTA modes, image suffixes) and
each score (ROI metrics) is defined once; every entry point offers exactly that list.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pathreview.errors import DeviceUnavailableError
from napari_pathreview.explain.methods import CAM_METHOD_NAMES
from napari_pathreview.inference.device import DEVICES, resolve_device
from napari_pathreview.stain.methods import STAIN_METHODS, normalizer_class
from napari_pathreview.tta import TTA_MODES

#: argparse dest → the one list its choices must be (wherever the option appears)
CLI_CHOICES = {"device": DEVICES, "stain": STAIN_METHODS, "tta": TTA_MODES}


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subparsers(sub)


def test_every_cli_choice_list_is_the_shared_one() -> None:
    from napari_pathreview.cli import build_parser

    checked = 0
    for parser in _subparsers(build_parser()):
        for action in parser._actions:
            expected = CLI_CHOICES.get(action.dest)
            if expected is not None and action.choices is not None:
                assert tuple(action.choices) == expected, f"{parser.prog} --{action.dest}"
                checked += 1
    assert checked >= 4  # predict/explain/evaluate-cam --device, --stain, demo --device, ...


def test_the_slide_flags_default_to_the_slide_settings_own() -> None:
    """``predict-slides`` and the Analyze dock start from one set of tiling defaults."""
    from napari_pathreview.cli import build_parser
    from napari_pathreview.inference.slide_cli import settings_from_args
    from napari_pathreview.inference.slide_grid import SlideSettings

    args = build_parser().parse_args(["predict-slides", "s.tif", "--model", "m", "--out", "o"])
    assert settings_from_args(args) == SlideSettings()


def test_stain_fit_offers_every_stain_method() -> None:
    from napari_pathreview.cli import build_parser

    (fit,) = [p for p in _subparsers(build_parser()) if p.prog.endswith("stain fit")]
    (method,) = [a for a in fit._actions if a.dest == "method"]
    assert tuple(method.choices) == STAIN_METHODS


def test_every_cam_method_name_is_bound_to_a_cam_class() -> None:
    from pytorch_grad_cam.base_cam import BaseCAM

    from napari_pathreview.explain.cams import CAM_METHODS

    assert tuple(CAM_METHODS) == CAM_METHOD_NAMES
    assert "eigengradcam" in CAM_METHOD_NAMES
    assert all(issubclass(cls, BaseCAM) for cls in CAM_METHODS.values())


def test_every_stain_method_name_is_its_normalizer_class_name() -> None:
    assert [normalizer_class(name).name for name in STAIN_METHODS] == list(STAIN_METHODS)


def test_card_recipe_and_review_store_accept_exactly_the_shared_lists() -> None:
    from napari_pathreview.modality import MODALITIES
    from napari_pathreview.models.base import MODALITIES as model_modalities
    from napari_pathreview.registry.card import MODALITIES as card_modalities
    from napari_pathreview.registry.card import STAIN_METHODS as card_methods
    from napari_pathreview.review.validation import MODALITIES as review_modalities
    from napari_pathreview.training.recipe import _CHOICES

    assert card_methods is STAIN_METHODS
    assert _CHOICES["data.stain"] is STAIN_METHODS
    assert _CHOICES["eval.tta"] is TTA_MODES
    assert _CHOICES["modality"] is MODALITIES
    assert card_modalities is model_modalities is review_modalities is MODALITIES


def test_stain_folder_listing_takes_every_format_the_reader_opens(tmp_path: Path) -> None:
    from napari_pathreview.stain._imageio import list_images

    names = ["a.png", "b.PGM", "c.svs", "d.dcm", "e.tiff", "notes.txt", "weights.pt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = [p.name for p in list_images(tmp_path)]
    assert found == ["a.png", "b.PGM", "c.svs", "d.dcm", "e.tiff"]


def test_widget_roi_scores_are_the_explain_metrics() -> None:
    import napari_pathreview.widgets._results as results

    assert not hasattr(results, "roi_scores")  # the copy is gone: explain.metrics is the one


def test_one_device_unavailable_error_everywhere() -> None:
    import napari_pathreview.inference as inference
    from napari_pathreview.inference import analysis

    assert inference.DeviceUnavailableError is DeviceUnavailableError
    assert analysis.DeviceUnavailableError is DeviceUnavailableError


def test_auto_device_prefers_cuda_then_mps_then_cpu() -> None:
    mps = getattr(torch.backends, "mps", None)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if mps is not None and mps.is_available()
        else "cpu"
    )
    assert resolve_device("auto").type == expected


def test_training_resolves_the_recipe_device_like_inference() -> None:
    from napari_pathreview.training.run import _device

    assert _device("auto", False) == resolve_device("auto")
    assert _device("cpu", False) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_training_refuses_absent_cuda_with_the_shared_error() -> None:
    from napari_pathreview.training.run import _device

    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        _device("cuda", False)


def _tiny_registered() -> tuple[object, str]:
    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    registry = ModelRegistry()
    model = create_model("resnet18", 2)
    card = {
        "name": "tiny",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, 32, 32],
    }
    return registry, registry.register(model, card)


def test_registry_load_auto_lands_on_the_resolved_device() -> None:
    registry, version = _tiny_registered()
    model = registry.load("tiny", version, device="auto")
    assert next(model.parameters()).device.type == resolve_device("auto").type


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_registry_load_on_absent_cuda_is_the_shared_error() -> None:
    registry, version = _tiny_registered()
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        registry.load("tiny", version, device="cuda")


@pytest.mark.parametrize(
    "override,key",
    [("eval.cam_methods=[gradcam, magiccam]", "eval.cam_methods"), ("device=tpu", "device")],
)
def test_recipe_names_are_checked_against_the_shared_lists(override: str, key: str) -> None:
    from napari_pathreview.training.recipe import RecipeError, load_recipe

    with pytest.raises(RecipeError, match=key):
        load_recipe({"data": {"source": "folder", "root": "x"}}, [override])


def test_recipe_accepts_every_cam_method_and_an_indexed_device() -> None:
    from napari_pathreview.training.recipe import load_recipe

    names = ", ".join(f'"{name}"' for name in CAM_METHOD_NAMES)
    recipe = load_recipe(
        {"data": {"source": "folder", "root": "x"}},
        [f"eval.cam_methods=[{names}]", "device=cuda:1"],
    )
    assert tuple(recipe.eval.cam_methods) == CAM_METHOD_NAMES and recipe.device == "cuda:1"


def test_lesion_patches_find_histology_tissue_with_the_qc_rule(shared_data: Path) -> None:
    from napari_pathreview.io import load_image, to_rgb_uint8
    from napari_pathreview.stain.qc import tissue_mask
    from napari_pathreview.training import patches

    path = shared_data / "breakhis" / "SOB_M_DC-14-2773-40-004.png"  # pale pink stroma
    rgb = to_rgb_uint8(load_image(path).data)
    assert np.array_equal(patches.tissue_mask(rgb, "histology"), tissue_mask(rgb))
