"""``pathreview explain`` and ``evaluate-cam``: CAMs (and a lesion model's own maps) scored
against ROIs, for one image or a MIAS folder (seed 004's protocol).

Only argparse at import time; torch, the models and pytorch-grad-cam load inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.cli_options import (
    build_predictor,
    cam_method,
    cam_methods,
    cam_options,
    explain_kwargs,
    model_options,
    preflight_card,
    tta_option,
    warn_tta_mismatch,
    write_csv,
)

DEFAULT_EVAL_METHODS = "gradcam,gradcam++,scorecam"
SCORE_COLUMNS = ["method", "target", "iou", "dice", "pointing", "energy", "cam_empty"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``explain`` and ``evaluate-cam`` to the ``pathreview`` parser."""
    explain = subparsers.add_parser("explain", help="score CAMs of one image against its ROI")
    explain.add_argument("image", type=Path)
    model_options(explain)
    explain.add_argument(
        "--method",
        default="gradcam",
        help="CAM method(s), comma-separated (e.g. gradcam,gradcam++,scorecam); a lesion-aware "
        "(patch MIL) model's own patch_map and attention_map are scored too",
    )
    roi = explain.add_mutually_exclusive_group(required=True)
    roi.add_argument("--roi", type=Path, help="GeoJSON with polygon/rectangle/ellipse ROIs")
    roi.add_argument("--mias-info", type=Path, help="MIAS Info.txt listing the image's ROI circle")
    explain.add_argument("--threshold", type=float, default=0.5, help="CAM binarisation threshold")
    explain.add_argument("--out", type=Path, default=None, help="optional CSV of the scores")
    tta_option(explain)  # decides the predicted class a CAM explains, as the Analyze dock's TTA
    cam_options(explain)
    explain.set_defaults(handler=_explain)

    evaluate = subparsers.add_parser(
        "evaluate-cam", help="CAM vs ROI over a MIAS folder (seed 004)"
    )
    evaluate.add_argument(
        "--mias", required=True, type=Path, help="folder with Info.txt and images"
    )
    model_options(evaluate)
    evaluate.add_argument("--methods", default=DEFAULT_EVAL_METHODS, help="comma-separated methods")
    evaluate.add_argument("--threshold", type=float, default=0.5, help="CAM binarisation threshold")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="summary CSV (mean ± sd per method)"
    )
    evaluate.add_argument("--per-image", type=Path, default=None, help="per-image scores CSV")
    evaluate.add_argument(
        "--limit", type=int, default=None, help="evaluate the first N images only"
    )
    tta_option(evaluate)  # as explain's: the views that decide the predicted class explained
    cam_options(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _check_threshold(value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InvalidInputError(f"--threshold must be in [0, 1], got {value}")


def _check_explain_args(args: argparse.Namespace) -> None:
    """Files, threshold, model card and modality of ``explain``, before torch loads."""
    from napari_pathreview import preflight

    preflight.require_file(args.image)
    if args.roi is not None:
        preflight.require_file(args.roi, "ROI file")
    else:
        preflight.require_file(args.mias_info, "MIAS Info.txt")
    _check_threshold(args.threshold)
    if args.out is not None:  # a report: every run rewrites it; its folder made on writing
        preflight.output_file(args.out, overwrite=True, create=False)
    preflight_card(args, [args.image])


def _check_evaluate_args(args: argparse.Namespace) -> None:
    """Folder, limit, threshold, model card and modality of ``evaluate-cam``, before torch."""
    from napari_pathreview import preflight

    if not args.mias.is_dir():
        raise InvalidInputError(f"--mias {args.mias} is not a folder (it must hold Info.txt)")
    names = ("Info.txt", "info.txt", "labels.csv")
    if not any((args.mias / n).is_file() for n in names):
        raise InvalidInputError(f"--mias {args.mias} has none of {', '.join(names)}")
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be at least 1 (or omitted: all), got {args.limit}")
    _check_threshold(args.threshold)
    for option in ("out", "per_image"):
        if getattr(args, option) is not None:
            flag = f"--{option.replace('_', '-')}"  # reports: every run rewrites them
            preflight.output_file(getattr(args, option), flag, overwrite=True, create=False)
    card = preflight_card(args, [])
    if card.modality != "mammogram" and not args.allow_modality_mismatch:
        raise InvalidInputError(
            f"model {card.ref} was trained on {card.modality} images but MIAS holds "
            "mammograms; pick a mammogram model, or pass --allow-modality-mismatch"
        )


def _explain(args: argparse.Namespace) -> int:
    from napari_pathreview.explain.evaluate import (
        roi_mask_from_geojson,
        roi_mask_from_mias,
        score_methods,
    )
    from napari_pathreview.io import load_image

    _check_explain_args(args)
    image = load_image(args.image)
    shape = image.levels[0].shape[:2]
    if args.roi is not None:  # a bad ROI is reported before the model loads
        mask = roi_mask_from_geojson(args.roi, shape)
    else:
        mask = roi_mask_from_mias(args.mias_info, args.image, shape)
    methods, maps = _explain_methods(args.method)
    predictor = build_predictor(args, tta=args.tta, qc=False)
    warn_tta_mismatch("explain", predictor.card, predictor.tta)
    for kind in maps:  # an ordinary CNN has no patch map: said before any CAM is computed
        cam_method(kind, predictor)
    if methods:
        predictor.require_cam_grid()  # a 1×1 CAM layer: say so, not a table of flat maps
    rows = []
    for method in methods:
        rows += score_methods(
            predictor, image, mask, [method], args.threshold, **explain_kwargs(args, method)
        )
    rows += _mil_map_rows(predictor, image, mask, args.threshold)
    print(f"{'method':<14}{'target':<14}{'IoU':>8}{'Dice':>8}{'pointing':>10}{'energy':>8}")
    for r in rows:
        print(
            f"{r['method']:<14}{r['target']:<14}{r['iou']:>8.3f}{r['dice']:>8.3f}"
            f"{int(r['pointing']):>10d}{r['energy']:>8.3f}"
            + ("  empty CAM" if r["cam_empty"] else "")
        )
    warn_empty_cams("explain", [{"image": args.image.name, **r} for r in rows])
    if args.out is not None:
        print(f"wrote {write_csv(args.out, rows, SCORE_COLUMNS)}")
    return 0


def _explain_methods(text: str) -> tuple[list[str], list[str]]:
    """``--method``: the CAM methods (checked before torch loads) and the patch MIL maps
    named (``patch_map``, ``attention_map``: a lesion model scores both anyway)."""
    from napari_pathreview.inference.mil_maps import MAP_KINDS

    names = [m.strip() for m in text.split(",") if m.strip()]
    maps = [m for m in names if m in MAP_KINDS]
    cams = [m for m in names if m not in MAP_KINDS]
    return (cam_methods(",".join(cams)) if cams or not maps else []), maps


def warn_empty_cams(command: str, rows: Sequence[dict[str, Any]], shown: int = 5) -> None:
    """Say on stderr, per method, which images got a constant CAM: their IoU/Dice 0 means
    the method gave no map, not that it missed the ROI."""
    empty: dict[str, list[str]] = {}
    for row in rows:
        if row["cam_empty"]:
            empty.setdefault(row["method"], []).append(row["image"])
    for method, images in empty.items():
        names = ", ".join(images[:shown])
        if len(images) > shown:
            names += f" and {len(images) - shown} more"
        print(
            f"pathreview {command}: warning: {method} CAM is empty (constant: no localisation) "
            f"on {names}; its IoU/Dice/pointing 0 there is no evidence of a miss",
            file=sys.stderr,
        )


def _mil_map_rows(predictor: Any, image: Any, mask: Any, threshold: float) -> list[dict]:
    """A patch MIL model's own maps (patch probability, attention), scored like its CAMs."""
    from napari_pathreview.explain.evaluate import scored_map
    from napari_pathreview.inference.mil_maps import MAP_KINDS, explain_mil, patch_mil_of

    if patch_mil_of(predictor) is None:
        return []

    explained = explain_mil(predictor, image)
    return [
        {
            "method": kind,
            "target": explained.label,
            **scored_map(explained.map(kind), mask, threshold),
        }
        for kind in MAP_KINDS
    ]


def _evaluate(args: argparse.Namespace) -> int:
    from napari_pathreview.explain.evaluate import iter_evaluate_mias, summarize, write_summary_csv

    _check_evaluate_args(args)
    methods = cam_methods(args.methods)
    predictor = build_predictor(args, tta=args.tta, qc=False)
    warn_tta_mismatch("evaluate-cam", predictor.card, predictor.tta)
    predictor.require_cam_grid()  # a 1×1 CAM layer: say so, not a table of flat maps
    rows = []
    for method in methods:
        rows += list(
            iter_evaluate_mias(
                predictor,
                args.mias,
                [method],
                args.threshold,
                limit=args.limit,
                **explain_kwargs(args, method),
            )
        )
    summaries = summarize(rows, methods)
    print(f"CAM vs ROI on {args.mias} (threshold {args.threshold}; mean ± sd over images)")
    print(
        f"{'method':<14}{'n':>4}{'empty':>6}  {'IoU':<15}{'Dice':<15}{'pointing':<15}{'energy':<15}"
    )
    for s in summaries:
        cells = "".join(
            f"{s.mean[k]:.3f} ± {s.sd[k]:.3f}".ljust(15)
            for k in ("iou", "dice", "pointing", "energy")
        )
        print(f"{s.method:<14}{s.n:>4}{s.n_cam_empty:>6}  {cells}")
    warn_empty_cams("evaluate-cam", rows)
    if args.out is not None:
        print(f"wrote {write_summary_csv(args.out, summaries)}")
    if args.per_image is not None:
        print(f"wrote {write_csv(args.per_image, rows, ['image', *SCORE_COLUMNS])}")
    return 0
