"""Turn errors into napari notifications that tell the pathologist what to do next.

Widgets never let an exception reach napari's traceback dialog for something the user can
fix: a ``PathReviewError`` (no model, modality mismatch, locked database, unreadable image)
becomes ``show_error`` with its message; other exceptions are logged with their traceback
and shown as a short error that says where the details are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from napari.utils.notifications import show_error, show_info, show_warning

from napari_pathreview.errors import PathReviewError

logger = logging.getLogger(__name__)

__all__ = ["notify_exception", "user_errors", "show_error", "show_info", "show_warning"]


def describe(error: BaseException) -> str:
    """The message shown for ``error``: its text for user errors, else a pointer to the log."""
    if isinstance(error, PathReviewError):
        return str(error)
    text = str(error) or type(error).__name__
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return (
            "The review database is locked by another program; nothing was lost — "
            "wait a moment and press Save again."
        )
    if "cuda" in lowered and ("not available" in lowered or "no cuda" in lowered):
        return "CUDA is not available on this machine; choose device 'auto' or 'cpu'."
    if "out of memory" in lowered:
        return "Out of memory; choose a smaller batch, the CPU, or a coarser pyramid level."
    return f"{type(error).__name__}: {text} (details in the log)"


def notify_exception(error: BaseException, context: str = "") -> str:
    """Show ``error`` as a napari error notification and return the text shown."""
    message = describe(error)
    if context:
        message = f"{context}: {message}"
    if isinstance(error, PathReviewError):
        logger.info("%s", message)
    else:
        logger.error("%s", message, exc_info=error)
    show_error(message)
    return message


@contextmanager
def user_errors(context: str = "") -> Iterator[None]:
    """Run a widget action; any exception becomes a notification instead of a traceback dialog."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every failure is reported to the user, none hidden
        notify_exception(error, context)
