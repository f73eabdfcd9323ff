"""``pathreview review stats|list|export``: the review database from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from napari_pathreview.cli import FORCE_FLAG, force_option
from napari_pathreview.inference.cli_options import modality_option
from napari_pathreview.inference.device import DEVICES
from napari_pathreview.review.manifest import DEFAULT_DISAGREEMENT_WEIGHT
from napari_pathreview.tta import TTA_MODES


def _add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="SQLite path or postgresql:// URL (default: $PATHREVIEW_DB_URL or "
        "$PATHREVIEW_HOME/reviews.sqlite); it must exist: reading never creates a database",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reviewer", help="only this reviewer's reviews")
    parser.add_argument("--model", metavar="NAME[@VERSION]", help="only reviews of this model")
    parser.add_argument(
        "--disagreements", action="store_true", help="only reviews that disagree with the model"
    )
    parser.add_argument("--label", help="only reviews with this label")
    parser.add_argument("--since", metavar="DATE", help="from this ISO date/time (inclusive)")
    parser.add_argument(
        "--until",
        metavar="DATE",
        help="up to this ISO date/time (inclusive; a bare date = the whole day)",
    )


def _filters(args: argparse.Namespace) -> dict[str, object]:
    return {
        "reviewer": args.reviewer,
        "model": args.model,
        "disagreements_only": args.disagreements,
        "label": args.label,
        "since": args.since,
        "until": args.until,
    }


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned plain-text columns (what the CLI prints)."""
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _stats(args: argparse.Namespace) -> int:
    from napari_pathreview.review.store import ReviewStore

    with ReviewStore(args.db, create=False) as store:
        counts = store.counts()
        stats = store.agreement(**_filters(args))
        print(f"database: {store.url} (schema version {store.schema_version})")
        print(format_table(["table", "rows"], sorted(counts.items())))
        print()
        print(
            f"latest reviews: {stats.n_reviews} of {stats.n_images} images by "
            f"{stats.n_reviewers} reviewers; disagreements with the model: "
            f"{stats.n_disagreements} (rate {_fmt(stats.disagreement_rate)})"
        )
        kappas = stats.reviewer_pairs + stats.reviewer_vs_model
        if kappas:
            print()
            print(
                format_table(
                    ["rater_a", "rater_b", "n", "agreement", "cohen_kappa"],
                    [
                        (k.rater_a, k.rater_b, k.n, _fmt(k.observed_agreement), _fmt(k.kappa))
                        for k in kappas
                    ],
                )
            )
    return 0


def _list(args: argparse.Namespace) -> int:
    from napari_pathreview.review.store import ReviewStore

    with ReviewStore(args.db, create=False) as store:
        records = store.reviews(**_filters(args))
    rows = [
        (
            r.id,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.reviewer,
            Path(r.image_path).name,
            r.model or "",
            r.predicted_label or "",
            r.label,
            {True: "yes", False: "NO"}.get(r.agrees_with_model, "—"),
            _fmt(r.confidence, 2) if r.confidence is not None else "",
        )
        for r in records
    ]
    header = [
        "id",
        "created_utc",
        "reviewer",
        "image",
        "model",
        "model_label",
        "label",
        "agrees",
        "confidence",
    ]
    print(format_table(header, rows))
    print(f"{len(records)} review(s)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from napari_pathreview import preflight
    from napari_pathreview.errors import reported_as
    from napari_pathreview.review.store import ReviewStore

    with reported_as(FORCE_FLAG):  # reviews change: an earlier export cannot be made again
        # its folder is made by the export itself, once the database has opened
        preflight.output_file(args.out, example="manifest.csv", overwrite=args.force, create=False)
    with ReviewStore(args.db, create=False) as store:
        path = store.export_manifest(args.out, args.disagreement_weight, **_filters(args))
        n_rows = sum(1 for _ in path.open(encoding="utf-8")) - 1
    print(f"wrote {path} ({n_rows} row(s); latest review per image and reviewer)")
    return 0


def _queue(args: argparse.Namespace) -> int:
    """Order a work queue by model uncertainty or map/ROI disagreement (active learning)."""
    from napari_pathreview import preflight
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.review.ordering import (
        order_images,
        reviewer_rois,
        store_queue,
        write_queue_csv,
    )
    from napari_pathreview.review.queue_source import queue_paths
    from napari_pathreview.review.store import ReviewStore

    # a report ordered afresh on every run; a folder is refused before the model runs, and
    # the CSV's folder is made only when it is written
    preflight.output_file(args.out, example="queue.csv", overwrite=True, create=False)
    model, rois = args.model, None
    if args.source is not None and model is None:
        raise InvalidInputError("review queue: give --model with a folder or CSV of images")
    if args.source is None or args.order == "roi_disagreement":
        with ReviewStore(args.db, create=False) as store:
            if args.source is None:
                paths, model = store_queue(store, model)
            if args.order == "roi_disagreement":
                rois = reviewer_rois(store)
    if args.source is not None:
        paths = queue_paths(args.source)
    # as `predict` does: a model of the other modality would order the queue by noise
    preflight.check_modalities(preflight.model_card(model), paths, args.allow_modality_mismatch)
    predictor = Predictor.from_registry(model, device=args.device)
    entries = order_images(predictor, paths, args.order, args.tta, rois)
    write_queue_csv(entries, args.out, args.order, predictor.classes)
    unscored = [entry for entry in entries if entry.problem]
    print(f"{len(entries) - len(unscored)} images ordered by {args.order}: {args.out}")
    if unscored:  # each was named in a warning as it was met
        print(f"{len(unscored)} image(s) not scored, queued last (see the problem column)")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``review stats|list|export`` to the ``pathreview`` parser."""
    review = subparsers.add_parser(
        "review",
        help="the review database: statistics, listing, training-manifest export",
        description="Reviews of model predictions: agreement statistics, listing, export.",
    )
    commands = review.add_subparsers(dest="review_command", metavar="SUBCOMMAND", required=True)

    stats = commands.add_parser("stats", help="counts, disagreement rate, Cohen's kappas")
    _add_db_option(stats)
    _add_filters(stats)
    stats.set_defaults(handler=_stats)

    listing = commands.add_parser("list", help="list reviews, filtered")
    _add_db_option(listing)
    _add_filters(listing)
    listing.set_defaults(handler=_list)

    export = commands.add_parser(
        "export", help="write the training manifest CSV (latest review per image and reviewer)"
    )
    _add_db_option(export)
    export.add_argument("--out", required=True, type=Path, help="manifest CSV to write")
    force_option(export, "--out file")
    export.add_argument(
        "--disagreement-weight",
        type=float,
        default=DEFAULT_DISAGREEMENT_WEIGHT,
        metavar="W",
        help="sample weight of reviews that disagree with the model "
        f"(default {DEFAULT_DISAGREEMENT_WEIGHT}, as in the Review widget)",
    )
    _add_filters(export)
    export.set_defaults(handler=_export)

    from napari_pathreview.review.ordering import QUEUE_ORDERS

    queue = commands.add_parser(
        "queue", help="order a work queue by model uncertainty (active learning) into a CSV"
    )
    queue.add_argument(
        "source",
        type=Path,
        nargs="?",
        default=None,
        help="a folder of images or a CSV with a 'path' column (default: the images the review "
        "store holds predictions for)",
    )
    queue.add_argument(
        "--model",
        metavar="NAME[@VERSION]",
        help="registered model (default: the model of the store's latest prediction)",
    )
    queue.add_argument("--order", choices=QUEUE_ORDERS, default="uncertainty")
    queue.add_argument("--tta", choices=TTA_MODES, default="flips")
    queue.add_argument("--device", choices=DEVICES, default="cpu")
    queue.add_argument("--out", required=True, type=Path, help="queue CSV to write")
    modality_option(queue)
    _add_db_option(queue)
    queue.set_defaults(handler=_queue)
