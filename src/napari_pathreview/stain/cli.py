"""``pathreview stain fit|apply`` and ``pathreview qc``: the command-line face of stain/ and qc.

Only argparse at import time; numpy, OpenCV and the normalisers load inside the handlers.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

from napari_pathreview.errors import InvalidInputError

logger = logging.getLogger(__name__)

METHODS = ("none", "reinhard", "macenko", "vahadane")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``stain`` (fit, apply) and ``qc`` to the ``pathreview`` parser."""
    stain = subparsers.add_parser("stain", help="fit a stain target or normalise images")
    stain_sub = stain.add_subparsers(dest="stain_command", metavar="{fit,apply}", required=True)

    fit = stain_sub.add_parser("fit", help="learn a stain target from images → target.json")
    fit.add_argument("--method", required=True, choices=METHODS)
    source = fit.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", type=Path, help="image files or folders (streamed)")
    source.add_argument(
        "--preset", choices=["breakhis"], help="reinhard only: seed 001's BreaKHis stats"
    )
    fit.add_argument("--out", required=True, type=Path, help="JSON file to write")
    fit.set_defaults(handler=_fit)

    apply = stain_sub.add_parser("apply", help="normalise images to a target.json")
    apply.add_argument("--target", required=True, type=Path, help="JSON written by `stain fit`")
    apply.add_argument("images", nargs="+", type=Path, help="image files or folders")
    apply.add_argument("--out", required=True, type=Path, help="folder for the normalised PNGs")
    apply.set_defaults(handler=_apply)

    qc = subparsers.add_parser("qc", help="image quality control → one CSV row per image")
    qc.add_argument("folder", type=Path, help="image file or folder (searched recursively)")
    qc.add_argument("--out", required=True, type=Path, help="CSV file to write")
    qc.add_argument("--blur-threshold", type=float, default=75.0, help="min Laplacian variance")
    qc.add_argument(
        "--background-threshold", type=int, default=220, help="gray level of background"
    )
    qc.add_argument("--min-tissue", type=float, default=0.40, help="min tissue fraction")
    qc.add_argument("--max-pen", type=float, default=0.05, help="max pen-mark fraction")
    qc.add_argument("--max-saturation", type=float, default=0.25, help="max clipped-pixel fraction")
    qc.set_defaults(handler=_qc)


def _collect(paths: list[Path]) -> list[Path]:
    from napari_pathreview.stain._imageio import list_images

    files = [f for p in paths for f in list_images(p)]
    if not files:
        raise InvalidInputError(f"no images found in {', '.join(map(str, paths))}")
    return files


def _fit(args: argparse.Namespace) -> int:
    from napari_pathreview.stain import (
        REINHARD_BREAKHIS_PRESET,
        get_normalizer,
        normalizer_from_dict,
    )
    from napari_pathreview.stain._imageio import read_rgb

    if args.preset:
        if args.method != "reinhard":
            raise InvalidInputError("--preset breakhis is a Reinhard target; use --method reinhard")
        normalizer = normalizer_from_dict(REINHARD_BREAKHIS_PRESET)
    else:
        files = _collect(args.images)
        normalizer = get_normalizer(args.method).fit(read_rgb(f) for f in files)
        logger.info("fitted %s on %d image(s)", args.method, len(files))
    state = normalizer.to_dict()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(state, indent=2))
    print(json.dumps(state))
    return 0


def _apply(args: argparse.Namespace) -> int:
    import cv2

    from napari_pathreview.stain import normalizer_from_dict
    from napari_pathreview.stain._imageio import read_rgb

    try:
        state = json.loads(args.target.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"cannot read stain target {args.target}: {error}") from error
    normalizer = normalizer_from_dict(state)
    args.out.mkdir(parents=True, exist_ok=True)
    print("image\toutput\tstatus")
    for path in _collect(args.images):
        result = normalizer.transform(read_rgb(path))
        dest = args.out / f"{path.stem}.png"
        cv2.imwrite(str(dest), cv2.cvtColor(result, cv2.COLOR_RGB2BGR))
        print(f"{path}\t{dest}\t{normalizer.last_flags[0] or 'normalised'}")
    return 0


def _qc(args: argparse.Namespace) -> int:
    from napari_pathreview.stain._imageio import read_rgb
    from napari_pathreview.stain.qc import QCConfig, assess_quality

    config = QCConfig(
        blur_threshold=args.blur_threshold,
        background_threshold=args.background_threshold,
        min_tissue_fraction=args.min_tissue,
        max_pen_fraction=args.max_pen,
        max_saturation_fraction=args.max_saturation,
    )
    files = _collect([args.folder])
    fields = [
        "path",
        "blur_score",
        "tissue_fraction",
        "pen_fraction",
        "saturation_fraction",
        "passed",
        "reasons",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    passed = 0
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for path in files:
            row = {"path": str(path), **assess_quality(read_rgb(path), config).to_dict()}
            passed += bool(row["passed"])
            writer.writerow(row)
            print(f"{'PASS' if row['passed'] else 'FAIL'}\t{path.name}\t{row['reasons']}")
    print(f"{passed}/{len(files)} passed; wrote {args.out}")
    return 0
