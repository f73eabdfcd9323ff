"""``pathreview predict``, ``explain`` and ``evaluate-cam``: the CLI of inference and explain.

Only argparse at import time; torch, the models and pytorch-grad-cam load inside the handlers.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError

logger = logging.getLogger(__name__)

STAIN_CHOICES = ("none", "reinhard", "macenko", "vahadane")
TTA_CHOICES = ("none", "flips", "d4")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_EVAL_METHODS = "gradcam,gradcam++,scorecam"


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model: NAME or NAME@VERSION")
    parser.add_argument(
        "--stain",
        choices=STAIN_CHOICES,
        default=None,
        help="stain normalisation (default: the model card's method and target)",
    )
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
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
        help="also write a CAM (.npy) and overlay (.png) per image",
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


def _predictor(args: argparse.Namespace, tta: str = "none", qc: bool = True) -> Any:
    from napari_pathreview.inference.predictor import Predictor

    if args.batch_size is not None and args.batch_size < 1:
        raise InvalidInputError("--batch-size must be at least 1")
    return Predictor.from_registry(
        args.model, device=args.device, stain=args.stain, tta=tta, batch_size=args.batch_size, qc=qc
    )


def _methods(text: str) -> list[str]:
    from napari_pathreview.explain.cams import resolve_method

    methods = [resolve_method(m) for m in text.split(",") if m.strip()]
    if not methods:
        raise InvalidInputError("give at least one CAM method")
    return methods


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
    from napari_pathreview.inference.predictor import Prediction

    predictor = _predictor(args, tta=args.tta, qc=not args.no_qc)
    method = _methods(args.cam)[0] if args.cam else None
    args.out.mkdir(parents=True, exist_ok=True)
    classes = predictor.classes
    header = [
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
    ]
    rows = []
    predictions = [p for p in predictor.iter_predict(args.images) if isinstance(p, Prediction)]
    for path, stem, p in zip(args.images, _stems(args.images), predictions, strict=True):
        rows.append(_prediction_row(p, classes))
        print(
            f"{path}\t{p.label}\t" + "\t".join(f"p_{c}={p.probabilities[c]:.3f}" for c in classes)
        )
        if method:
            _write_cam(
                args.out,
                stem,
                path,
                predictor.explain(path, method, **_explain_kwargs(args, method)),
            )
    csv_path = _write_csv(args.out / "predictions.csv", rows, header)
    print(f"wrote {csv_path}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from napari_pathreview.explain.evaluate import (
        roi_mask_from_geojson,
        roi_mask_from_mias,
        score_methods,
    )
    from napari_pathreview.io import load_image

    methods = _methods(args.method)
    predictor = _predictor(args, qc=False)
    image = load_image(args.image)
    shape = image.levels[0].shape[:2]
    if args.roi is not None:
        mask = roi_mask_from_geojson(args.roi, shape)
    else:
        mask = roi_mask_from_mias(args.mias_info, args.image, shape)
    rows = []
    for method in methods:
        rows += score_methods(
            predictor, image, mask, [method], args.threshold, **_explain_kwargs(args, method)
        )
    print(f"{'method':<14}{'target':<14}{'IoU':>8}{'Dice':>8}{'pointing':>10}{'energy':>8}")
    for r in rows:
        print(
            f"{r['method']:<14}{r['target']:<14}{r['iou']:>8.3f}{r['dice']:>8.3f}"
            f"{int(r['pointing']):>10d}{r['energy']:>8.3f}"
        )
    if args.out is not None:
        _write_csv(args.out, rows, ["method", "target", "iou", "dice", "pointing", "energy"])
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from napari_pathreview.explain.evaluate import iter_evaluate_mias, summarize, write_summary_csv

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
