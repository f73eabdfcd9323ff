"""What ``pathreview predict``, ``explain`` and ``evaluate-cam`` share (``predict-slides`` the
stain, TTA and modality options): the model, stain and CAM options, the checks made before
torch loads, and how a result becomes a CSV.

Only argparse at import time; torch, the models and pytorch-grad-cam load inside the functions.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError, PathReviewError, reported_as
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.stain.methods import STAIN_METHODS
from napari_pathreview.tta import TTA_MODES

STAIN_CHOICES = STAIN_METHODS
STAIN_FLAGS = {"stain": "--stain", "stain_target": "--stain-target"}
"""How the stain options' errors name them (``errors.reported_as``): the flags, not ``stain=``."""
TTA_CHOICES = TTA_MODES
DEVICE_CHOICES = DEVICES


def model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model: NAME or NAME@VERSION")
    stain_options(parser)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    modality_option(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="model inputs per forward, TTA views included (default: 8 on CPU, 32 on GPU)",
    )


def stain_options(parser: argparse.ArgumentParser) -> None:
    """``--stain`` and ``--stain-target`` (shared with ``predict-slides``); read by
    :func:`stain_arg`."""
    parser.add_argument(
        "--stain",
        choices=STAIN_CHOICES,
        default=None,
        help="stain normalisation (default: the model card's method and target)",
    )
    parser.add_argument(
        "--stain-target",
        type=Path,
        default=None,
        metavar="FILE",
        help="fitted stain target JSON (from `pathreview stain fit`); its method is used",
    )


def modality_option(parser: argparse.ArgumentParser) -> None:
    """``--allow-modality-mismatch`` (shared with ``predict-slides``)."""
    parser.add_argument(
        "--allow-modality-mismatch",
        action="store_true",
        help="run a model on images of the other modality (refused by default)",
    )


def cam_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target-class", default=None, help="class name to explain (default: the predicted class)"
    )
    parser.add_argument(
        "--cam-tta",
        choices=TTA_CHOICES,
        default="none",
        help="average each CAM over these views (de-augmented)",
    )
    parser.add_argument(
        "--scorecam-batch-size", type=int, default=64, help="Score-CAM masked inputs per forward"
    )
    parser.add_argument(
        "--scorecam-top-k",
        type=int,
        default=None,
        help="Score-CAM: score only the K most active channels (approximate)",
    )


def stain_arg(args: argparse.Namespace) -> Any:
    """``--stain`` or, with ``--stain-target FILE``, that file's fitted state (checked first).

    Raises:
        StainTargetError: the file is missing, not JSON or not a fitted state (named, under
            the flag); InvalidInputError: ``--stain`` names another method than the file's.
    """
    target = getattr(args, "stain_target", None)
    if target is None:
        return args.stain
    from napari_pathreview.stain.targets import StainTargetError, load_target

    try:
        state = load_target(target)
    except StainTargetError as error:
        raise StainTargetError(f"--stain-target: {error}") from error
    if args.stain not in (None, str(state["method"])):
        raise InvalidInputError(
            f"--stain {args.stain} but --stain-target {target} is a {state['method']} target; "
            "drop --stain or pass a target fitted with that method"
        )
    return state


def preflight_card(
    args: argparse.Namespace, images: list[Path], probes: Mapping[Path, Any] | None = None
) -> Any:
    """Check the model reference, its card and the images' modality before torch loads
    (``probes``: images the caller has probed already, ``preflight.probe_image``)."""
    from napari_pathreview import preflight

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    card = preflight.model_card(args.model)
    preflight.check_modalities(card, images, args.allow_modality_mismatch, probes=probes)
    return card


def tta_option(parser: argparse.ArgumentParser) -> None:
    """``--tta``: by default the model card's, the views its threshold and calibration assume."""
    parser.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default=None,
        help="test-time augmentation (default: the model card's tta, the views its threshold "
        "and two-film calibration were fitted under; 'none' for most models)",
    )


def warn_tta_mismatch(command: str, card: Any, tta: str) -> None:
    """Say on stderr when ``tta`` is not the one the card's decisions were fitted under."""
    from napari_pathreview.registry.card import tta_mismatch

    reason = tta_mismatch(card, tta)
    if reason is not None:
        print(f"pathreview {command}: warning: {reason}", file=sys.stderr)


def build_predictor(
    args: argparse.Namespace, tta: str | None = None, qc: bool = True, stain: Any = None
) -> Any:
    """The Predictor the options describe (``tta`` None: the card's); after ``preflight_card``,
    which checks them. ``stain``: what :func:`stain_arg` returned, when the caller read it
    up front (None: read it here)."""
    if stain is None:
        stain = stain_arg(args)
    from napari_pathreview.inference.predictor import Predictor

    with reported_as(STAIN_FLAGS):
        return Predictor.from_registry(
            args.model, device=args.device, stain=stain, tta=tta, batch_size=args.batch_size, qc=qc
        )


def checked_stain(card: Any, stain: Any) -> Any:
    """``resolve_stain`` for a CLI: the normaliser, or a refusal naming the stain flags, before
    any weights load."""
    from napari_pathreview.inference.preprocess import resolve_stain  # imports torch

    with reported_as(STAIN_FLAGS):
        return resolve_stain(card, stain)


def cam_methods(text: str) -> list[str]:
    from napari_pathreview.explain.cams import resolve_method

    methods = [resolve_method(m) for m in text.split(",") if m.strip()]
    if not methods:
        raise InvalidInputError("give at least one CAM method")
    return methods


def cam_method(text: str, predictor: Any) -> str:
    """``--cam``: a CAM method, or a patch MIL model's own ``patch_map`` / ``attention_map``."""
    from napari_pathreview.inference.mil_maps import MAP_KINDS, patch_mil_of

    if text not in MAP_KINDS:
        return cam_methods(text)[0]
    if patch_mil_of(predictor) is None:
        raise InvalidInputError(
            f"--cam {text}: {predictor.model_ref} is not a lesion-aware patch MIL model, so it "
            "has no patch or attention map; use a CAM method (e.g. gradcam)"
        )
    return text


def cam_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.scorecam_batch_size, "top_k": args.scorecam_top_k}


def check_cam_options(args: argparse.Namespace, method: str, predictor: Any) -> None:
    """``--target-class``, the Score-CAM options and the model's CAM grid, checked once before
    the first image: a bad one would otherwise fail the CAM of every image, one by one.

    The grid last: a CAM layer too coarse to localise (``CamResolutionError``) is the one
    refusal ``predict`` turns into skipped CAMs, so the options are checked before it.
    """
    from napari_pathreview.inference.mil_maps import MAP_KINDS

    if args.target_class is not None:  # a class name: the probabilities are not consulted
        import numpy as np

        predictor.target_index(args.target_class, np.zeros(len(predictor.classes)))
    if method == "scorecam":
        from napari_pathreview.explain.cams import check_scorecam_options

        check_scorecam_options(**cam_kwargs(args))
    if method not in MAP_KINDS:
        predictor.require_cam_grid()


def explain_kwargs(args: argparse.Namespace, method: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"target_class": args.target_class, "tta": args.cam_tta}
    if method == "scorecam":
        kwargs.update(cam_kwargs(args))
    return kwargs


def write_csv(path: Path, rows: list[dict[str, Any]], header: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def describe_error(error: BaseException) -> str:
    """A project error as its message; anything else prefixed with its type."""
    if isinstance(error, PathReviewError):
        return str(error)
    return f"{type(error).__name__}: {error}"
