"""The ``pathreview`` command: one argparse tree, each area contributing its sub-commands.

Every area module listed in ``COMMAND_MODULES`` exposes ``add_commands(subparsers)``,
which adds parsers whose ``handler`` default takes the parsed namespace and returns an
exit status. Area modules import heavy libraries (torch, napari) inside their handlers,
so ``pathreview --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence

from napari_pathreview import __version__
from napari_pathreview.errors import PathReviewError

COMMAND_MODULES: tuple[str, ...] = (
    "napari_pathreview.demo",  # demo
    "napari_pathreview.inference.cli",  # predict, explain, evaluate-cam
    "napari_pathreview.training.cli",  # train
    "napari_pathreview.models.cli",  # models list|show|remove|import|export
    "napari_pathreview.stain.cli",  # stain fit|apply, qc
    "napari_pathreview.review.cli",  # review stats|list|export
)


class TypedFlag(argparse.Action):
    """Stores an option's value and the spelling typed (``--mpp`` or ``--slide-um-per-px``).

    With :func:`typed_flags` and ``errors.reported_as``, a bad value is reported under the flag
    the user wrote rather than the config field it fills.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        setattr(namespace, self.dest, values)
        vars(namespace).setdefault("typed_flags", {})[self.dest] = option_string


def typed_flags(args: argparse.Namespace) -> dict[str, str]:
    """Destination → the flag typed for it, for every :class:`TypedFlag` option given."""
    return dict(getattr(args, "typed_flags", {}))


FORCE_FLAG: dict[str, str] = {"overwrite": "--force"}
"""How ``--force`` is named in a refusal (``errors.reported_as``): the flag, not ``overwrite=``."""


def force_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--force``: replace an existing ``what`` (refused without it: ``preflight.output_file``)."""
    parser.add_argument("--force", action="store_true", help=f"replace an existing {what}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every area's sub-commands attached."""
    parser = argparse.ArgumentParser(
        prog="pathreview",
        description="Breast pathology review: readers, stain normalisation, models, CAMs, reviews.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only an area that is absent altogether is skipped (tests/test_cli.py requires
            # every documented command); a missing dependency inside an area still raises.
            if error.name is None or not module_name.startswith(error.name):
                raise
            continue
        module.add_commands(subparsers)
    _plain_help(parser)
    return parser


# Docstring markup that reads as noise in a terminal: ``code`` and :role:`target`.
_MARKUP = (
    (re.compile(r":[a-z]+:`~?([^`]+)`"), r"\1"),
    (re.compile(r"``([^`]+)``"), r"\1"),
)


def plain_text(text: str | None) -> str | None:
    """``text`` without reStructuredText markup (help text is read in a terminal)."""
    if not text:
        return text
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip docstring markup from every description and help line, sub-commands included."""
    parser.description = plain_text(parser.description)
    parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        action.help = plain_text(action.help) if isinstance(action.help, str) else action.help
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
            for sub in set(action.choices.values()):
                _plain_help(sub)


QUIET_LIBRARIES: tuple[str, ...] = ("distributed",)
"""Loggers whose INFO lines only ``-v`` shows: Dask's scheduler, nanny and core log every start,
connection and shutdown (some twenty lines per ``predict-slides`` on a local cluster), which
buried the command's own summary. Their warnings and errors always show."""


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Handler filter: keep a record unless it is a quiet library's, below WARNING."""
    library = record.name.split(".", 1)[0]
    return record.levelno >= logging.WARNING or library not in QUIET_LIBRARIES


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for log_handler in logging.getLogger().handlers:
            log_handler.addFilter(_quiet_libraries)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    try:
        return int(handler(args) or 0)
    except PathReviewError as error:
        print(f"pathreview {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Whoever read stdout stopped early (`pathreview models list | head`): stop quietly,
        # as Unix tools do, with the status of a process ended by SIGPIPE.
        _silence_stdout()
        return 128 + 13
    except OSError as error:
        # A file the command was pointed at (permissions, a folder given for a file, a full
        # disk): the user's to fix, so no traceback; an OSError without a file is a bug.
        if error.filename is None:
            raise
        print(f"pathreview {args.command}: error: {_describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pathreview {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit cannot raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _describe_os_error(error: OSError) -> str:
    """The user's path and what is wrong with it. A rename's error names the target only: the
    source is the hidden temporary file of an atomic write, which the user never gave."""
    where = error.filename if error.filename2 is None else error.filename2
    if isinstance(error, IsADirectoryError):
        return f"{where} is a folder; give a file name"
    return f"{where}: {error.strerror or error}"


if __name__ == "__main__":
    sys.exit(main())
