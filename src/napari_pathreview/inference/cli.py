"""``pathreview predict``, ``explain`` and ``evaluate-cam``: the CLI of inference and explain.

Only argparse at import time; torch, the models and pytorch-grad-cam load inside the handlers.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from napari_pathreview.errors import ImageReadError, InvalidInputError, PathReviewError
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.stain.methods import STAIN_METHODS
from napari_pathreview.tta import TTA_MODES

logger = logging.getLogger(__name__)

STAIN_CHOICES = STAIN_METHODS
TTA_CHOICES = TTA_MODES
DEVICE_CHOICES = DEVICES
DEFAULT_EVAL_METHODS = "gradcam,gradcam++,scorecam"


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model: NAME or NAME@VERSION")
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
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument(
        "--allow-modality-mismatch",
        action="store_true",
        help="run a model on images of the other modality (refused by default)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="model inputs per forward, TTA views included (default: 8 on CPU, 32 on GPU)",
    )


def _cam_options(parser: argparse.ArgumentParser) -> None:
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


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``predict``, ``explain`` and ``evaluate-cam`` to the ``pathreview`` parser."""
    predict = subparsers.add_parser("predict", help="classify images → predictions.csv (+ CAMs)")
    predict.add_argument("images", nargs="+", type=Path, help="image files")
    _model_options(predict)
    predict.add_argument(
        "--tta", choices=TTA_CHOICES, default="none", help="test-time augmentation"
    )
    predict.add_argument(
        "--cam",
        default=None,
        metavar="METHOD",
        help="also write a CAM (.npy) and overlay (.png) per image; a lesion-aware (patch MIL) "
        "model also offers patch_map and attention_map",
    )
    predict.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    predict.add_argument("--no-qc", action="store_true", help="skip quality control")
    _cam_options(predict)
    predict.set_defaults(handler=_predict)

    explain = subparsers.add_parser("explain", help="score CAMs of one image against its ROI")
    explain.add_argument("image", type=Path)
    _model_options(explain)
    explain.add_argument(
        "--method",
        default="gradcam",
        help="CAM method(s), comma-separated (e.g. gradcam,gradcam++,scorecam)",
    )
    roi = explain.add_mutually_exclusive_group(required=True)
    roi.add_argument("--roi", type=Path, help="GeoJSON with polygon/rectangle/ellipse ROIs")
    roi.add_argument("--mias-info", type=Path, help="MIAS Info.txt listing the image's ROI circle")
    explain.add_argument("--threshold", type=float, default=0.5, help="CAM binarisation threshold")
    explain.add_argument("--out", type=Path, default=None, help="optional CSV of the scores")
    _cam_options(explain)
    explain.set_defaults(handler=_explain)

    evaluate = subparsers.add_parser(
        "evaluate-cam", help="CAM vs ROI over a MIAS folder (seed 004)"
    )
    evaluate.add_argument(
        "--mias", required=True, type=Path, help="folder with Info.txt and images"
    )
    _model_options(evaluate)
    evaluate.add_argument("--methods", default=DEFAULT_EVAL_METHODS, help="comma-separated methods")
    evaluate.add_argument("--threshold", type=float, default=0.5, help="CAM binarisation threshold")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="summary CSV (mean ± sd per method)"
    )
    evaluate.add_argument("--per-image", type=Path, default=None, help="per-image scores CSV")
    evaluate.add_argument(
        "--limit", type=int, default=None, help="evaluate the first N images only"
    )
    _cam_options(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    from napari_pathreview.inference import slide_cli

    slide_cli.add_commands(subparsers)  # predict-slides, cache


def _stain_arg(args: argparse.Namespace) -> Any:
    """``--stain`` or, with ``--stain-target FILE``, that file's fitted state (checked first)."""
    target = getattr(args, "stain_target", None)
    if target is None:
        return args.stain
    from napari_pathreview.stain.targets import load_target

    state = load_target(target)
    if args.stain not in (None, str(state["method"])):
        raise InvalidInputError(
            f"--stain {args.stain} but {target} is a {state['method']} target; "
            "drop --stain or pass a target fitted with that method"
        )
    return state


def _preflight(args: argparse.Namespace, images: list[Path]) -> Any:
    """Check the model reference, its card and the images' modality before torch loads."""
    from napari_pathreview import preflight

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    card = preflight.model_card(args.model)
    preflight.check_modalities(card, images, args.allow_modality_mismatch)
    return card


def _predictor(args: argparse.Namespace, tta: str = "none", qc: bool = True) -> Any:
    stain = _stain_arg(args)
    from napari_pathreview.inference.predictor import Predictor

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInputError("--batch-size must be at least 1")
    return Predictor.from_registry(
        args.model, device=args.device, stain=stain, tta=tta, batch_size=args.batch_size, qc=qc
    )


def _methods(text: str) -> list[str]:
    from napari_pathreview.explain.cams import resolve_method

    methods = [resolve_method(m) for m in text.split(",") if m.strip()]
    if not methods:
        raise InvalidInputError("give at least one CAM method")
    return methods


def _cam_method(text: str, predictor: Any) -> str:
    """``--cam``: a CAM method, or a patch MIL model's own ``patch_map`` / ``attention_map``."""
    from napari_pathreview.inference.mil_maps import MAP_KINDS, patch_mil_of

    if text not in MAP_KINDS:
        return _methods(text)[0]
    if patch_mil_of(predictor) is None:
        raise InvalidInputError(
            f"--cam {text}: {predictor.model_ref} is not a lesion-aware patch MIL model, so it "
            "has no patch or attention map; use a CAM method (e.g. gradcam)"
        )
    return text


def _cam_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.scorecam_batch_size, "top_k": args.scorecam_top_k}


def _explain_kwargs(args: argparse.Namespace, method: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"target_class": args.target_class, "tta": args.cam_tta}
    if method == "scorecam":
        kwargs.update(_cam_kwargs(args))
    return kwargs


def _prediction_row(p: Any, classes: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": p.path, "model": p.model}
    row.update({f"p_{c}": f"{p.probabilities[c]:.6f}" for c in classes})
    row.update(
        {
            "predicted_label": p.label,
            "threshold": "" if p.threshold is None else p.threshold,
            "qc_passed": "" if p.qc is None else p.qc.passed,
            "qc_reasons": "" if p.qc is None else ";".join(p.qc.reasons),
            "stain": p.stain,
            "tta": p.tta,
            "seconds": f"{p.seconds:.4f}",
        }
    )
    return row


def _write_csv(path: Path, rows: list[dict[str, Any]], header: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_cam(out: Path, stem: str, image_path: Path, result: Any) -> None:
    import cv2
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from napari_pathreview.inference.preprocess import decode

    np.save(out / f"{stem}_{result.method}.npy", result.cam)
    rgb = decode(image_path).rgb
    if rgb.shape[:2] != result.cam.shape:
        rgb = cv2.resize(
            rgb, (result.cam.shape[1], result.cam.shape[0]), interpolation=cv2.INTER_AREA
        )
    overlay = show_cam_on_image(rgb.astype(np.float32) / 255.0, result.cam, use_rgb=True)
    cv2.imwrite(str(out / f"{stem}_{result.method}.png"), overlay[:, :, ::-1])


def _stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _predict(args: argparse.Namespace) -> int:
    """Predict every image; a bad one gets ``status=error`` in its row and the rest go on."""
    from napari_pathreview import preflight

    images = list(args.images)
    problems = {i: preflight.file_problem(p) for i, p in enumerate(images)}
    readable = [p for i, p in enumerate(images) if problems[i] is None]
    if not readable:
        raise ImageReadError("; ".join(str(m) for m in problems.values()))
    _preflight(args, readable)
    out = preflight.output_folder(args.out)
    predictor = _predictor(args, tta=args.tta, qc=not args.no_qc)
    method = _cam_method(args.cam, predictor) if args.cam else None
    classes = predictor.classes
    rows = []
    for path, stem, p in _iter_predictions(predictor, images, problems):
        if isinstance(p, str):
            rows.append({"path": str(path), "model": predictor.model_ref, **_failed(p)})
            print(f"{path}\terror\t{p}")
            continue
        row = {**_prediction_row(p, classes), "status": "ok", "error": ""}
        print(
            f"{path}\t{p.label}\t" + "\t".join(f"p_{c}={p.probabilities[c]:.3f}" for c in classes)
        )
        if method:
            try:
                result = predictor.explain(path, method, **_explain_kwargs(args, method))
                _write_cam(out, stem, path, result)
            except Exception as error:  # noqa: BLE001 - one image must not stop the batch
                row.update(_failed(f"CAM: {_describe(error)}"))
        rows.append(row)
    csv_path = _write_csv(out / "predictions.csv", rows, _predict_header(classes))
    print(f"wrote {csv_path}")
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        logger.error("%d of %d image(s) failed; see the status/error columns", failed, len(rows))
        print(f"pathreview predict: {failed} of {len(rows)} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _predict_header(classes: tuple[str, ...]) -> list[str]:
    return [
        "path",
        "model",
        *[f"p_{c}" for c in classes],
        "predicted_label",
        "threshold",
        "qc_passed",
        "qc_reasons",
        "stain",
        "tta",
        "seconds",
        "status",
        "error",
    ]


def _failed(message: str) -> dict[str, str]:
    return {"status": "error", "error": message}


def _describe(error: BaseException) -> str:
    """A project error as its message; anything else prefixed with its type."""
    if isinstance(error, PathReviewError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _iter_predictions(
    predictor: Any, images: list[Path], problems: dict[int, str | None]
) -> Iterator[tuple[Path, str, Any]]:
    """(path, stem, Prediction or error text) in input order, batch by batch.

    A batch that fails is retried image by image, so one unreadable file costs only itself.
    """
    stems = _stems(images)
    good = [i for i in range(len(images)) if problems[i] is None]
    results: dict[int, Any] = {i: problems[i] for i in range(len(images)) if problems[i]}
    size = predictor.images_per_forward
    for start in range(0, len(good), size):
        chunk = good[start : start + size]
        try:
            for i, p in zip(chunk, predictor.predict([images[i] for i in chunk]), strict=True):
                results[i] = p
        except Exception:  # noqa: BLE001 - retried one by one below to find the bad image
            for i in chunk:
                try:
                    results[i] = predictor.predict([images[i]])[0]
                except Exception as error:  # noqa: BLE001 - recorded in the row, batch goes on
                    logger.debug("prediction of %s failed", images[i], exc_info=True)
                    results[i] = _describe(error)
    for i, path in enumerate(images):
        yield path, stems[i], results[i]


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
    if args.out is not None:
        preflight.output_file(args.out)
    _preflight(args, [args.image])


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
            preflight.output_file(getattr(args, option), f"--{option.replace('_', '-')}")
    card = _preflight(args, [])
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
    methods = _methods(args.method)
    predictor = _predictor(args, qc=False)
    rows = []
    for method in methods:
        rows += score_methods(
            predictor, image, mask, [method], args.threshold, **_explain_kwargs(args, method)
        )
    rows += _mil_map_rows(predictor, image, mask, args.threshold)
    print(f"{'method':<14}{'target':<14}{'IoU':>8}{'Dice':>8}{'pointing':>10}{'energy':>8}")
    for r in rows:
        print(
            f"{r['method']:<14}{r['target']:<14}{r['iou']:>8.3f}{r['dice']:>8.3f}"
            f"{int(r['pointing']):>10d}{r['energy']:>8.3f}"
        )
    if args.out is not None:
        _write_csv(args.out, rows, ["method", "target", "iou", "dice", "pointing", "energy"])
    return 0


def _mil_map_rows(predictor: Any, image: Any, mask: Any, threshold: float) -> list[dict]:
    """A patch MIL model's own maps (patch probability, attention), scored like its CAMs."""
    from napari_pathreview.explain.metrics import roi_scores
    from napari_pathreview.inference.mil_maps import MAP_KINDS, explain_mil, patch_mil_of

    if patch_mil_of(predictor) is None:
        return []

    explained = explain_mil(predictor, image)
    return [
        {
            "method": kind,
            "target": explained.label,
            **roi_scores(explained.map(kind), mask, threshold),
        }
        for kind in MAP_KINDS
    ]


def _evaluate(args: argparse.Namespace) -> int:
    from napari_pathreview.explain.evaluate import iter_evaluate_mias, summarize, write_summary_csv

    _check_evaluate_args(args)
    methods = _methods(args.methods)
    predictor = _predictor(args, qc=False)
    rows = []
    for method in methods:
        rows += list(
            iter_evaluate_mias(
                predictor,
                args.mias,
                [method],
                args.threshold,
                limit=args.limit,
                **_explain_kwargs(args, method),
            )
        )
    summaries = summarize(rows, methods)
    print(f"CAM vs ROI on {args.mias} (threshold {args.threshold}; mean ± sd over images)")
    print(f"{'method':<14}{'n':>4}  {'IoU':<15}{'Dice':<15}{'pointing':<15}{'energy':<15}")
    for s in summaries:
        cells = "".join(
            f"{s.mean[k]:.3f} ± {s.sd[k]:.3f}".ljust(15)
            for k in ("iou", "dice", "pointing", "energy")
        )
        print(f"{s.method:<14}{s.n:>4}  {cells}")
    if args.out is not None:
        print(f"wrote {write_summary_csv(args.out, summaries)}")
    if args.per_image is not None:
        _write_csv(
            args.per_image, rows, ["image", "method", "target", "iou", "dice", "pointing", "energy"]
        )
    return 0
