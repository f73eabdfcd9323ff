"""``pathreview stain fit|apply`` and ``pathreview qc``: the command-line face of stain/ and qc.

Only argparse at import time; numpy, OpenCV and the normalisers load inside the handlers.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from napari_pathreview.cli import FORCE_FLAG, TypedFlag, force_option, typed_flags
from napari_pathreview.errors import InvalidInputError, PathReviewError, reported_as
from napari_pathreview.stain.methods import STAIN_METHODS

logger = logging.getLogger(__name__)

METHODS = STAIN_METHODS

#: ``pathreview qc``'s threshold flags → (``QCConfig`` field, type, help): the one table that
#: builds the parser, the config and the errors, which name the flag the user typed; a flag
#: left out keeps QCConfig's default
QC_FLAGS: dict[str, tuple[str, type, str]] = {
    "--blur-threshold": ("blur_threshold", float, "min Laplacian variance"),
    "--background-threshold": ("background_threshold", int, "gray level of background"),
    "--min-tissue": ("min_tissue_fraction", float, "min tissue fraction"),
    "--max-pen": ("max_pen_fraction", float, "max pen-mark fraction"),
    "--max-saturation": ("max_saturation_fraction", float, "max clipped-pixel fraction"),
    "--washed-out-level": ("washed_out_level", int, "grey of the darkest 1%% that is washed out"),
}


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
    force_option(fit, "--out file")
    fit.set_defaults(handler=_fit)

    apply = stain_sub.add_parser("apply", help="normalise images to a target.json")
    apply.add_argument("--target", required=True, type=Path, help="JSON written by `stain fit`")
    apply.add_argument("images", nargs="+", type=Path, help="image files or folders")
    apply.add_argument("--out", required=True, type=Path, help="folder for the normalised PNGs")
    apply.set_defaults(handler=_apply)

    qc = subparsers.add_parser("qc", help="image quality control → one CSV row per image")
    qc.add_argument("folder", type=Path, help="image file or folder (searched recursively)")
    qc.add_argument("--out", required=True, type=Path, help="CSV file to write")
    for flag, (field, kind, text) in QC_FLAGS.items():
        metavar = flag[2:].replace("-", "_").upper()
        # unset: None; TypedFlag lets an error name the flag
        qc.add_argument(flag, dest=field, type=kind, metavar=metavar, help=text, action=TypedFlag)
    qc.set_defaults(handler=_qc)


def _collect(paths: list[Path]) -> list[Path]:
    from napari_pathreview.stain._imageio import list_images

    files = [f for p in paths for f in list_images(p)]
    if not files:
        raise _no_images(paths)
    return files


def _no_images(paths: list[Path]) -> InvalidInputError:
    return InvalidInputError(f"no images found in {', '.join(map(str, paths))}")


def _fit(args: argparse.Namespace) -> int:
    from napari_pathreview import preflight
    from napari_pathreview.stain import (
        REINHARD_BREAKHIS_PRESET,
        get_normalizer,
        normalizer_from_dict,
    )
    from napari_pathreview.stain.base import StainFitError

    with reported_as(FORCE_FLAG):  # a bad or existing --out fails before the images are read
        out = preflight.output_file(args.out, overwrite=args.force, create=False)
    if args.preset:
        if args.method != "reinhard":
            raise InvalidInputError("--preset breakhis is a Reinhard target; use --method reinhard")
        normalizer = normalizer_from_dict(REINHARD_BREAKHIS_PRESET)
    else:
        files = _collect(args.images)
        used: list[Path] = []
        try:
            normalizer = get_normalizer(args.method).fit(_histology_rgbs(files, used))
        except StainFitError:  # also what an empty stream raises
            if used:
                raise
            raise InvalidInputError(
                f"none of the {len(files)} image(s) in {', '.join(map(str, args.images))} is "
                "H&E histology: fit a stain target on stained tissue images"
            ) from None
        logger.info("fitted %s on %d image(s)", args.method, len(used))
    state = normalizer.to_dict()
    out.parent.mkdir(parents=True, exist_ok=True)  # only now: a refused fit leaves no folder
    out.write_text(json.dumps(state, indent=2), encoding="utf-8")
    print(json.dumps(state))
    return 0


def _histology_rgbs(files: list[Path], used: list[Path]):
    """The RGB of each histology image of ``files`` (streamed; each one appended to ``used``);
    any other image is skipped with a warning on stderr, not fitted as a stain reference."""
    from napari_pathreview.stain._imageio import histology_rgb

    for path in files:
        rgb, reason = histology_rgb(path, "stain fitting")
        if reason is not None:
            print(f"pathreview stain fit: warning: skipped {path} ({reason})", file=sys.stderr)
            continue
        used.append(path)
        yield rgb


def _apply(args: argparse.Namespace) -> int:
    """Normalise every image; one that cannot be read is reported and the rest go on."""
    from napari_pathreview import preflight
    from napari_pathreview.stain import normalizer_from_dict
    from napari_pathreview.stain.targets import load_target

    normalizer = normalizer_from_dict(load_target(args.target))
    pairs = _destinations(args.images, args.out)  # collisions refused before any write
    preflight.output_folder(args.out)
    print("image\toutput\tstatus")
    failed = 0
    for path, dest in pairs:
        try:
            status = _normalise_one(normalizer, path, dest)
        except Exception as error:  # noqa: BLE001 - one bad image must not stop the batch
            failed += 1
            status = f"error: {_describe(error)}"
        print(f"{path}\t{dest}\t{status}")
    return _batch_status("stain apply", failed, len(pairs))


def _destinations(paths: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """Each input image and the PNG it becomes under ``out``, keeping its folder's layout.

    Images found in a folder keep their path below it, so ``a/x.png`` and ``b/x.png`` do not
    write one file over the other.

    Raises:
        InvalidInputError: when two inputs would still share an output (``x.png`` and ``x.tif``,
            or two files of one name given directly), or an output would replace its own input,
            before anything is written.
    """
    pairs: dict[Path, Path] = {}
    for root in paths:
        for path in _images_of(root, out):
            relative = path.relative_to(root) if root.is_dir() else Path(path.name)
            dest = out / relative.with_suffix(".png")
            if dest in pairs and pairs[dest].resolve() == path.resolve():
                continue  # the same image named twice is normalised once
            if dest in pairs:
                raise InvalidInputError(
                    f"{pairs[dest]} and {path} would both be written to {dest}; "
                    "rename one or normalise them in separate runs"
                )
            if dest.resolve() == path.resolve():
                raise InvalidInputError(
                    f"{path} would be overwritten by its normalised copy; choose another --out"
                )
            pairs[dest] = path
    if not pairs:
        raise _no_images(paths)
    return [(path, dest) for dest, path in pairs.items()]


def _images_of(root: Path, out: Path) -> list[Path]:
    """The images of one input file or folder, less those under ``out``.

    An output folder inside the input folder holds an earlier run's PNGs: output, not input,
    so a rerun does not normalise them again.

    Raises:
        InvalidInputError: when ``out`` is the input folder itself (its PNGs would be replaced).
    """
    from napari_pathreview.stain._imageio import list_images

    if not root.is_dir():
        return list_images(root)
    if root.resolve() == out.resolve():
        raise InvalidInputError(
            f"--out {out} is the input folder {root}; its images would be replaced by their "
            "normalised copies: choose another --out folder"
        )
    skip = out.resolve()
    return [p for p in list_images(root) if not p.parent.resolve().is_relative_to(skip)]


def _normalise_one(normalizer, path: Path, dest: Path) -> str:
    """Normalise one image to ``dest``; a non-histology image is skipped (nothing written)."""
    import cv2

    from napari_pathreview.stain._imageio import histology_rgb

    rgb, reason = histology_rgb(path, "stain normalisation")
    if reason is not None:
        return f"skipped: {reason}"
    result = normalizer.transform(rgb)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), cv2.cvtColor(result, cv2.COLOR_RGB2BGR)):
        raise InvalidInputError(f"could not write {dest}")
    return normalizer.last_flags[0] or "normalised"


def _describe(error: BaseException) -> str:
    """A project error as its message; anything else prefixed with its type."""
    if isinstance(error, PathReviewError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _batch_status(command: str, failed: int, total: int) -> int:
    """Exit status of a batch: 1 (with a line on stderr) when any item failed."""
    if not failed:
        return 0
    print(f"pathreview {command}: {failed} of {total} image(s) failed", file=sys.stderr)
    return 1


def _qc(args: argparse.Namespace) -> int:
    """QC every image; one that cannot be read gets ``status=error`` and the rest go on, one
    that is not histology ``status=skipped``."""
    from napari_pathreview import preflight

    config = _qc_config(args)
    files = _collect([args.folder])
    fields = [
        "path",
        "blur_score",
        "tissue_fraction",
        "pen_fraction",
        "saturation_fraction",
        "dark_level",
        "passed",
        "reasons",
        "status",
        "error",
    ]
    out = preflight.output_file(args.out, overwrite=True)  # a report: every run rewrites it
    passed = failed = skipped = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for path in files:
            try:
                row = _qc_row(path, config)
            except Exception as error:  # noqa: BLE001 - recorded in the row, the rest go on
                failed += 1
                writer.writerow({"path": str(path), "status": "error", "error": _describe(error)})
                print(f"ERROR\t{path.name}\t{_describe(error)}")
                continue
            writer.writerow(row)
            if row["status"] == "skipped":
                skipped += 1
                print(f"SKIP\t{path.name}\t{row['reasons']}")
                continue
            passed += bool(row["passed"])
            print(f"{'PASS' if row['passed'] else 'FAIL'}\t{path.name}\t{row['reasons']}")
    checked = len(files) - skipped
    note = f"; {skipped} skipped (not histology)" if skipped else ""
    print(f"{passed}/{checked} passed{note}; wrote {out}")
    return _batch_status("qc", failed, len(files))


def _qc_row(path: Path, config) -> dict:
    """One image's CSV row. QC's rules (blur, tissue against a white background, pen ink) are
    H&E histology's, as in ``Predictor``: a mammogram would be called pen-marked and clipped
    for its black background, so it is skipped, saying why, rather than failed."""
    from napari_pathreview.stain._imageio import histology_rgb
    from napari_pathreview.stain.qc import assess_quality

    rgb, reason = histology_rgb(path, "QC")
    if reason is not None:
        return {"path": str(path), "reasons": reason, "status": "skipped", "error": ""}
    quality = assess_quality(rgb, config).to_dict()
    return {"path": str(path), **quality, "status": "ok", "error": ""}


def _qc_config(args: argparse.Namespace):
    """The ``QCConfig`` of the flags given; a bad value is reported under its flag.

    Raises:
        InvalidInputError: naming the flag (``--min-tissue``), not the field behind it.
    """
    from napari_pathreview.stain.qc import QCConfig

    given = {field: getattr(args, field) for field, _, _ in QC_FLAGS.values()}
    with reported_as(typed_flags(args)):
        return QCConfig(**{field: value for field, value in given.items() if value is not None})
