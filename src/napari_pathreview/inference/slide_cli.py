"""``pathreview predict-slides`` and ``pathreview cache list|clear``.

Only argparse at import time; torch, Dask and zarr load inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from napari_pathreview.cli import TypedFlag, typed_flags
from napari_pathreview.errors import InvalidInputError, reported_as
from napari_pathreview.inference.cli_options import (
    checked_stain,
    modality_option,
    stain_arg,
    stain_options,
    tta_option,
    warn_tta_mismatch,
)
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.inference.slide_grid import MODES, SlideSettings

if TYPE_CHECKING:
    from napari_pathreview.inference.cohort import CohortJob, CohortSummary

logger = logging.getLogger(__name__)

DEFAULTS = SlideSettings()
"""The flags' defaults are the settings' own (the Analyze dock shows the same ones)."""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``predict-slides`` and ``cache`` to the ``pathreview`` parser."""
    run = subparsers.add_parser(
        "predict-slides",
        help="classify whole slides at the model's µm/px (Dask) → slides.csv, zarr, GeoJSON",
    )
    run.add_argument("slides", nargs="+", type=Path, help="slide files or folders of slides")
    run.add_argument("--model", required=True, help="registered model: NAME or NAME@VERSION")
    run.add_argument("--out", required=True, type=Path, help="output folder")
    run.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://host:8786); default: a local cluster",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local cluster workers (default: one per GPU, else per 4 cores; 0 = no Dask)",
    )
    run.add_argument("--device", choices=DEVICES, default="auto")
    stain_options(run)
    tta_option(run)
    modality_option(run)
    add_tiling_options(run)
    run.add_argument(
        "--no-qc", action="store_true", help="skip the tiles' quality control (no qc_ columns)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_predict_slides)

    cache = subparsers.add_parser("cache", help="the slide result cache: list or clear it")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="cached slide results, most recent first").set_defaults(
        handler=_cache_list
    )
    actions.add_parser("clear", help="remove every cached slide result").set_defaults(
        handler=_cache_clear
    )


def add_tiling_options(parser: argparse.ArgumentParser) -> None:
    """The slide-engine settings as options (shared with any command that tiles slides).

    Each value option records the spelling typed (``TypedFlag``), so a bad value is reported
    under it (``--mpp must be …``) rather than the ``SlideSettings`` field it fills.
    """
    add_scale_options(parser)
    typed = {"action": TypedFlag}
    parser.add_argument(
        "--overlap",
        type=float,
        default=DEFAULTS.overlap,
        help="tile overlap in [0, 0.9] (default: %(default)s)",
        **typed,
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="tiles per forward (default: 8 on CPU, 32 on GPU)",
        **typed,
    )
    parser.add_argument(
        "--read-workers",
        type=int,
        default=DEFAULTS.read_workers,
        help="tile reader threads (default: %(default)s)",
        **typed,
    )


def add_scale_options(parser: argparse.ArgumentParser, what: str = "slide") -> None:
    """``--mode``, ``--model-um-per-px``, ``--mpp``, ``--min-tissue``, ``--no-tissue`` and
    ``--qc-max-flagged``: at what resolution tiles are read, which are classified, and when
    their quality checks flag the slide (``predict-slides``; ``predict`` for its large images,
    read by :func:`scale_settings`).

    Args:
        what: What ``--mpp`` applies to, as its help names it.
    """
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=DEFAULTS.mode,
        help="matched: tile at the model's µm/px (default); preview: a coarse level, fast, "
        "not the resolution the model learned",
    )
    typed = {"action": TypedFlag}
    parser.add_argument(
        "--model-um-per-px",
        type=float,
        default=None,
        help="the model's training resolution, for cards registered without one",
        **typed,
    )
    parser.add_argument(
        "--slide-um-per-px",
        "--mpp",
        dest="slide_um_per_px",
        type=float,
        default=None,
        help=(
            f"level-0 µm per pixel for every {what} given: for files that do not state it or"
            " state it wrongly (it replaces a stated value; never guessed)"
        ),
        **typed,
    )
    parser.add_argument(
        "--min-tissue",
        type=float,
        default=DEFAULTS.min_tissue,
        help="least tissue fraction of a tile (default: %(default)s)",
        **typed,
    )
    parser.add_argument("--no-tissue", action="store_true", help="classify glass tiles too")
    parser.add_argument(
        "--qc-max-flagged",
        type=float,
        default=DEFAULTS.qc_max_flagged,
        help=f"flag a {what} when more than this share of its tissue tiles fail quality "
        "control (blur, pen, exposure; default: %(default)s)",
        **typed,
    )


def scale_settings(args: argparse.Namespace):
    """``SlideSettings`` from :func:`add_scale_options` only (the rest at their defaults, as
    the Analyze dock tiles); a bad value is reported under its flag."""
    with reported_as(typed_flags(args)):
        return SlideSettings(
            mode=args.mode,
            model_um_per_px=args.model_um_per_px,
            slide_um_per_px=args.slide_um_per_px,
            min_tissue=args.min_tissue,
            tissue=not args.no_tissue,
            qc_max_flagged=args.qc_max_flagged,
        )


def settings_from_args(args: argparse.Namespace):
    """``SlideSettings`` from the tiling options; a bad value is reported under its flag.

    Raises:
        InvalidInputError: naming the flag typed (``--mpp``), not the field behind it.
    """
    with reported_as(typed_flags(args)):
        return SlideSettings(
            mode=args.mode,
            overlap=args.overlap,
            min_tissue=args.min_tissue,
            tissue=not args.no_tissue,
            batch_size=args.batch_size,
            read_workers=args.read_workers,
            model_um_per_px=args.model_um_per_px,
            slide_um_per_px=args.slide_um_per_px,
            qc_max_flagged=args.qc_max_flagged,
        )


def _predict_slides(args: argparse.Namespace) -> int:
    from napari_pathreview.inference.cohort import run_cohort

    job = _checked_job(args)
    summary = run_cohort(
        args.slides,
        job,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.no_progress,
    )
    _say_summary(summary, job.settings["qc_max_flagged"])
    return 1 if summary.failures else 0


def _checked_job(args: argparse.Namespace) -> CohortJob:
    """The cohort's ``CohortJob``, every input refused here, once, before any slide is read
    (rather than by every slide of the cohort); says which stain target slides.csv names."""
    from napari_pathreview import preflight
    from napari_pathreview.inference.cohort import expand_slides, job_from_settings
    from napari_pathreview.registry.card import reading_tta
    from napari_pathreview.stain.targets import target_id

    if args.workers is not None and args.workers < 0:
        raise InvalidInputError("--workers must be 0 (no Dask) or more")
    settings = settings_from_args(args)
    stain = stain_arg(args)  # a --stain-target file is read and checked before any slide
    preflight.output_folder(args.out, "--out", create=False)  # a file there: refused up front
    missing = [str(p) for p in args.slides if not p.exists()]
    if missing:
        raise InvalidInputError(f"no such slide file or folder: {', '.join(missing)}")
    paths = expand_slides(args.slides)
    card = preflight.model_card(args.model)  # fails fast on an unknown model
    # Refused here, once, rather than by every slide of the cohort (or, for a model of the
    # other modality, not at all: its rows came out empty with exit status 0).
    preflight.check_modalities(card, paths, args.allow_modality_mismatch)
    applied = target_id(checked_stain(card, stain))
    if settings.mode == "matched":
        from napari_pathreview.inference.slide_grid import model_um_per_px

        model_um_per_px(card, settings)  # a card without a resolution is refused up front
    warn_tta_mismatch("predict-slides", card, reading_tta(card, args.tta))
    job = job_from_settings(
        f"{card.name}@{card.version}",
        args.out,
        settings,
        device=args.device,
        stain=stain,
        tta=args.tta,
        qc=not args.no_qc,
    )
    if applied:  # ties the stain_target column of slides.csv to the target's file or card
        source = args.stain_target or (f"for --stain {stain}" if stain else f"of {args.model}")
        print(f"stain target {source}: id {applied} in slides.csv")
    return job


def _say_summary(summary: CohortSummary, max_flagged: float) -> None:
    """What the run did, in a few lines: slides done, skipped and failed, the workers' model
    load (kept out of each slide's seconds), QC flags, and the slides run again as changed."""
    print(
        f"{len(summary.rows)} slide(s) done, {len(summary.skipped)} skipped as finished, "
        f"{len(summary.failures)} failed → {summary.slides_csv}"
    )
    if loads := summary.model_loads:
        warmups = summary.model_warmups or [0.0]
        print(
            f"model loaded by {len(loads)} worker(s), {sum(loads) / len(loads):.1f} s each on "
            f"average, and warmed up ({sum(warmups) / len(warmups):.1f} s: one forward), before "
            "their first slide (model_load_s, model_warmup_s; not in seconds or tiles_per_s)"
        )
    _say_flagged(summary.rows, max_flagged)
    if summary.changed:
        print(
            f"{len(summary.changed)} of them changed since their earlier result (a file "
            "rewritten: another size or modification time) and were run again"
        )
    if summary.failures:
        print(f"failures: {summary.failures_csv}")


def _say_flagged(rows: list[dict], max_flagged: float) -> None:
    """Name the slides of this run that quality control flagged (their ``qc_reasons`` say
    why), or say that none was; nothing when QC did not run."""
    judged = [r for r in rows if r.get("qc_passed") != ""]
    if not judged:
        return
    flagged = [r["slide"] for r in judged if r["qc_passed"] is False]
    if not flagged:
        print(f"QC: none of {len(judged)} slide(s) flagged")
        return
    shown = ", ".join(flagged[:SHOWN_FLAGGED]) + (", …" if len(flagged) > SHOWN_FLAGGED else "")
    print(
        f"QC flagged {len(flagged)} of {len(judged)} slide(s), over {max_flagged:.0%} of their "
        f"tissue tiles blurred, pen-marked or badly exposed (qc_reasons in slides.csv): {shown}"
    )


#: Flagged slides the summary names; the rest are in slides.csv (qc_passed False).
SHOWN_FLAGGED = 20


def _cache_list(args: argparse.Namespace) -> int:
    from napari_pathreview.inference.cache import SlideCache

    cache = SlideCache()
    entries = cache.entries()
    total = sum(e.bytes for e in entries)
    print(
        f"{len(entries)} cached slide result(s), {total / 2**20:.1f} MiB of "
        f"{cache.max_bytes / 2**20:.0f} MiB, in {cache.root}"
    )
    for entry in entries:
        fields = entry.fields
        um = (fields.get("settings") or {}).get("mode", "")
        print(
            f"{entry.key[:12]}  {entry.bytes / 2**20:8.2f} MiB  {fields.get('model', '?'):<20} "
            f"{um:<8} {entry.slide}"
        )
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    from napari_pathreview.inference.cache import SlideCache

    removed = SlideCache().clear()
    print(f"removed {removed} cached slide result(s)")
    return 0
