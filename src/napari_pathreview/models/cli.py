"""``pathreview models list|show|remove|import|export|convert-weights``: models from the shell.

Module-level imports stay light (no torch): the registry package reads cards without torch, and
the factory is imported only when architectures are listed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from napari_pathreview.cli import FORCE_FLAG, force_option

METRIC_KEYS: tuple[str, ...] = ("roc_auc", "auc", "balanced_accuracy", "accuracy", "f1_macro", "f1")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``models`` and its sub-commands to the ``pathreview`` parser."""
    models = subparsers.add_parser(
        "models", help="list, show, remove, import or export models; convert backbone weights"
    )
    models.add_argument(
        "--registry", metavar="DIR", help="registry folder (default: $PATHREVIEW_HOME/models)"
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="registered models (or --architectures)")
    listing.add_argument(
        "--architectures", action="store_true", help="list buildable architectures"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="print a model card")
    show.add_argument("ref", metavar="NAME[@VERSION]")
    show.add_argument("--json", action="store_true", help="print the card as JSON")
    show.set_defaults(handler=_show)

    remove = actions.add_parser("remove", help="delete a version (or every version) of a model")
    remove.add_argument("ref", metavar="NAME[@VERSION]", help="without @VERSION: all versions")
    remove.set_defaults(handler=_remove)

    importing = actions.add_parser("import", help="import an exported folder or .tar(.gz)")
    importing.add_argument("path", metavar="PATH")
    importing.set_defaults(handler=_import)

    export = actions.add_parser("export", help="export a model to a folder or .tar/.tar.gz")
    export.add_argument("ref", metavar="NAME[@VERSION]")
    export.add_argument("dest", metavar="DEST")
    force_option(export, "archive file DEST")
    export.set_defaults(handler=_export)

    convert = actions.add_parser(
        "convert-weights",
        help="turn another code base's checkpoint of a timm backbone into ARCH.safetensors",
    )
    convert.add_argument("checkpoint", metavar="CHECKPOINT", help=".pth/.pt/.safetensors file")
    convert.add_argument("--arch", required=True, help="timm architecture it is a checkpoint of")
    convert.add_argument(
        "--out",
        required=True,
        metavar="DIR_OR_FILE",
        help="a folder (→ ARCH.safetensors, e.g. $PATHREVIEW_PRETRAINED_DIR) or a .safetensors",
    )
    force_option(convert, "weights file (ARCH.safetensors in the folder, or the file)")
    convert.set_defaults(handler=_convert)


def _registry(args: argparse.Namespace):
    from napari_pathreview.registry import ModelRegistry

    return ModelRegistry(getattr(args, "registry", None))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def _metrics_text(metrics: dict) -> str:
    """Up to three headline figures; training stores its held-out figures under "test"."""
    source = metrics["test"] if isinstance(metrics.get("test"), dict) else metrics
    flat = {k: v for k, v in source.items() if isinstance(v, (int, float)) and v is not True}
    keys = [k for k in METRIC_KEYS if k in flat] or list(flat)[:3]
    return " ".join(f"{k}={flat[k]:.3f}" for k in keys[:3]) or "-"


def _list(args: argparse.Namespace) -> int:
    if args.architectures:
        from napari_pathreview.models.factory import describe_architectures

        rows = describe_architectures()
        if args.json:
            print(json.dumps([name for name, _ in rows]))
            return 0
        print(format_table(("ARCHITECTURE", "DESCRIPTION"), rows))
        print("\nAny timm classifier name (timm.list_models()) works too.")
        return 0
    summaries = _registry(args).list()
    if args.json:
        print(json.dumps([s.__dict__ | {"classes": list(s.classes)} for s in summaries], indent=2))
        return 0
    if not summaries:
        print(
            "no models registered yet: run `pathreview demo`, `pathreview train RECIPE` "
            "or `pathreview models import PATH`"
        )
        return 0
    rows = [
        (
            s.ref,
            s.task,
            s.modality,
            ",".join(s.classes),
            s.architecture,
            _metrics_text(s.metrics),
            s.created_at[:19].replace("T", " "),
        )
        for s in summaries
    ]
    headers = ("MODEL", "TASK", "MODALITY", "CLASSES", "ARCHITECTURE", "METRICS", "CREATED (UTC)")
    print(format_table(headers, rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    import yaml

    from napari_pathreview.registry import parse_model_ref

    name, version = parse_model_ref(args.ref)
    registry = _registry(args)
    card = registry.card(name, version)
    if args.json:
        print(json.dumps(card.to_dict(), indent=2))
        return 0
    print(f"# {card.ref}  ({registry.folder(name, card.version)})")
    print(yaml.safe_dump(card.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
    return 0


def _remove(args: argparse.Namespace) -> int:
    from napari_pathreview.registry import parse_model_ref

    name, version = parse_model_ref(args.ref)
    removed = _registry(args).remove(name, version)
    print(f"removed {', '.join(f'{name}@{v}' for v in removed)}")
    return 0


def _import(args: argparse.Namespace) -> int:
    registry = _registry(args)
    before = {(m.name, m.version) for m in registry.list()} if registry.root.is_dir() else set()
    name, version = registry.import_model(args.path)
    if (name, version) in before:
        print(f"{args.path} is already registered as {name}@{version} (same weights and card)")
    else:
        print(f"imported {name}@{version}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from napari_pathreview import preflight
    from napari_pathreview.errors import reported_as
    from napari_pathreview.registry import parse_model_ref
    from napari_pathreview.registry.transfer import archive_suffix

    name, version = parse_model_ref(args.ref)
    registry = _registry(args)
    card = registry.card(name, version)  # the version "latest" is now, named in the message
    suffix = archive_suffix(Path(args.dest))
    with reported_as(FORCE_FLAG):
        if suffix is not None:  # a folder so named fails only at the rename, naming the temp file
            example = f"{card.name}-v{card.version}{suffix}"  # its folder made on writing
            preflight.output_file(
                args.dest, "the destination", example, overwrite=args.force, create=False
            )
        path = registry.export(name, card.version, args.dest, overwrite=args.force)
    print(f"exported {card.ref} to {path}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from napari_pathreview.errors import reported_as
    from napari_pathreview.models.convert_weights import convert_checkpoint

    with reported_as(FORCE_FLAG):
        out = convert_checkpoint(args.checkpoint, args.arch, args.out, overwrite=args.force)
    print(f"wrote {out} ({args.arch}); use it with model.pretrained: true and")
    print(f"PATHREVIEW_PRETRAINED_DIR={out.parent} (or pretrained_path: {out})")
    return 0
