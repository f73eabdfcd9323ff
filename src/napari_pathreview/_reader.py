"""napari reader contribution: histology, slides, mammograms, MIAS Info.txt and GeoJSON ROIs.

``napari_get_reader`` only looks at the path (and the first bytes of a .json) and returns
None for anything else; it never raises. The returned function reads each file; a file
it cannot read gives an error notification and no layer, never a crash dialog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_pathreview.errors import PathReviewError

logger = logging.getLogger(__name__)

PathOrPaths = str | Path | Sequence[str | Path]
NULL_LAYER: list[tuple[None]] = [(None,)]
"""napari's documented "read, but no layers" value: the reader claimed the file, so napari
must not fall through to another reader or report that nothing could read it."""


def _as_paths(path: PathOrPaths) -> list[Path] | None:
    if isinstance(path, (str, Path)):
        return [Path(path)]
    if isinstance(path, Sequence) and path and all(isinstance(p, (str, Path)) for p in path):
        return [Path(p) for p in path]
    return None


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list] | None:
    """Return ``read_paths`` when every path is a file this plugin opens, else None."""
    try:
        from napari_pathreview.io.layers import can_read

        paths = _as_paths(path)
        if not paths or not all(can_read(p) for p in paths):
            return None
    except Exception:  # a reader probe must never raise into napari; log for debugging
        logger.exception("napari-pathreview: could not probe %r", path)
        return None
    return read_paths


def _notify_error(message: str) -> None:
    """Show the message in napari's notification area (or log it when napari is absent)."""
    logger.error(message)
    try:
        from napari.utils.notifications import show_error
    except ImportError:
        return
    show_error(message)


def read_paths(path: PathOrPaths) -> list[tuple[Any, ...]]:
    """Read each path into layers; unreadable files are reported, not raised.

    Returns:
        LayerData tuples, or ``[(None,)]`` when no file could be read.
    """
    from napari_pathreview.io.layers import layers_for_path

    layers: list[tuple[Any, ...]] = []
    for file in _as_paths(path) or []:
        try:
            layers.extend(layers_for_path(file))
        except PathReviewError as error:
            _notify_error(f"napari-pathreview could not open a file. {error}")
        except Exception as error:  # unexpected: still no crash dialog, but keep the traceback
            logger.exception("napari-pathreview: unexpected error reading %s", file)
            _notify_error(
                f"napari-pathreview could not open {file.name}: {type(error).__name__}: {error}"
            )
    return layers or NULL_LAYER
