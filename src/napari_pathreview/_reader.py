"""napari reader contribution: histology, slides, mammograms, MIAS Info.txt and GeoJSON ROIs,
and folders of DICOM files (each film and whole-slide series a layer: ``io.folders``).

``napari_get_reader`` only looks at the path (and the first bytes of a .json, or of a
folder's first files) and returns None for anything else; it never raises. The returned
function reads each file; a file it cannot read gives an error notification and no layer,
never a crash dialog. Every layer comes as LayerData, so napari applies what
``viewer.open(path, name=..., ...)`` asks for; an ROI with holes is outlined by the follower
``read_layers`` connects (``widgets._hole_outlines``).
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
    """Return ``read_layers`` when every path is a file this plugin opens, else None."""
    try:
        from napari_pathreview.io.layers import can_read

        paths = _as_paths(path)
        if not paths or not all(can_read(p) for p in paths):
            return None
    except Exception:  # a reader probe must never raise into napari; log for debugging
        logger.exception("napari-pathreview: could not probe %r", path)
        return None
    return read_layers


def _notify_error(message: str) -> None:
    """Show the message in napari's notification area (or log it when napari is absent)."""
    logger.error(message)
    try:
        from napari.utils.notifications import show_error
    except ImportError:
        return
    show_error(message)


def _notify_warning(message: str) -> None:
    try:
        from napari.utils.notifications import show_warning
    except ImportError:
        return
    show_warning(message)


def _warn_unknown_pixel_size(layers: list[tuple[Any, ...]], file: Path) -> None:
    """One notification per opened slide whose file does not state its pixel size."""
    for layer in layers:
        facts = layer[1].get("metadata", {}).get("pathreview", {}) if len(layer) > 1 else {}
        if facts.get("backend") and not facts.get("um_per_px"):
            _notify_warning(
                f"{file.name}: the file does not state its pixel size, so the slide opens in "
                "pixels (the scale bar counts pixels). Set it in the Analyze widget's pixel size "
                "field, with load_image(path, um_per_px=...) or "
                "`pathreview predict-slides --slide-um-per-px`."
            )
            return


def _warn_notes(layers: list[tuple[Any, ...]]) -> None:
    """What a layer's metadata says the user must know: a GeoJSON left in pixels (no image of
    its name beside it) or doubtfully placed; a slide's z-stack shown at one focal plane."""
    for layer in layers:
        facts = layer[1].get("metadata", {}).get("pathreview", {}) if len(layer) > 1 else {}
        for key in ("frame_note", "focal_plane_note"):
            if facts.get(key):
                _notify_warning(str(facts[key]))


def _has_holes(layer: tuple[Any, ...]) -> bool:
    facts = layer[1].get("metadata", {}).get("pathreview", {}) if len(layer) > 1 else {}
    return bool(facts.get("holes"))


def _slide_fingerprint(layers: list[tuple[Any, ...]]) -> str:
    facts = layers[0][1].get("metadata", {}).get("pathreview", {}) if layers else {}
    return str(facts.get("slide_fingerprint", ""))


def _expand_folders(paths: list[Path]) -> list[tuple[Path, str | None]]:
    """Files as given (their layers keep their names); a folder as its images and DICOM series,
    each named (``io.folders``), after a notice naming what in it cannot be opened."""
    from napari_pathreview.io.folders import folder_contents

    expanded: list[tuple[Path, str | None]] = []
    for file in paths:
        if not file.is_dir():
            expanded.append((file, None))
            continue
        try:
            contents = folder_contents(file)
        except OSError as error:  # a folder that cannot be listed (permissions)
            _notify_error(f"napari-pathreview could not list {file}: {error.strerror or error}")
            continue
        listed = "; ".join(f"{p.name}: {why}" for p, why in contents.problems[:10])
        if len(contents.problems) > 10:
            listed += f" (+{len(contents.problems) - 10} more)"
        if not contents.items:
            _notify_error(
                f"napari-pathreview found no image to open in {file}"
                + (f"; not opened: {listed}" if listed else "")
            )
        elif listed:
            _notify_warning(f"napari-pathreview opened {file.name} without: {listed}")
        expanded.extend((item.path, item.name) for item in contents.items)
    return expanded


def _named(layers: list[tuple[Any, ...]], name: str | None) -> list[tuple[Any, ...]]:
    """The file's image layer renamed ``name`` (a folder's item; a stack's name still says how
    many frames it holds); other layers as they are."""
    if name is None or not layers or len(layers[0]) < 3 or layers[0][2] != "image":
        return layers
    data, kwargs, kind = layers[0][:3]
    frames = int(kwargs.get("metadata", {}).get("pathreview", {}).get("frames", 1))
    if frames > 1:
        from napari_pathreview.io.frames import stack_name

        name = stack_name(name, frames)
    return [(data, {**kwargs, "name": name}, kind), *layers[1:]]


def read_paths(path: PathOrPaths) -> list[tuple[Any, ...]]:
    """Read each path into layers; unreadable files are reported, not raised.

    A folder opens as its images and DICOM series, one layer each (``io.folders``).

    Returns:
        LayerData tuples, or ``[(None,)]`` when no file could be read.
    """
    from napari_pathreview.io.layers import layers_for_path

    layers: list[tuple[Any, ...]] = []
    slides: set[str] = set()  # several instances of one DICOM WSI series open it once
    for file, name in _expand_folders(_as_paths(path) or []):
        try:
            opened = _named(layers_for_path(file), name)
            fingerprint = _slide_fingerprint(opened)
            if fingerprint in slides:
                continue
            if fingerprint:
                slides.add(fingerprint)
            _warn_unknown_pixel_size(opened, file)
            _warn_notes(opened)
            layers.extend(opened)
        except PathReviewError as error:
            _notify_error(f"napari-pathreview could not open a file. {error}")
        except Exception as error:  # unexpected: still no crash dialog, but keep the traceback
            logger.exception("napari-pathreview: unexpected error reading %s", file)
            _notify_error(
                f"napari-pathreview could not open {file.name}: {type(error).__name__}: {error}"
            )
    return layers or NULL_LAYER


def read_layers(path: PathOrPaths) -> list[tuple[Any, ...]]:
    """What napari adds for ``path``: ``read_paths``'s LayerData, never napari layers (napari
    adds a layer object as it is, without the ``name`` or other arguments given to
    ``viewer.open``). The holes of an ROI layer are outlined by a follower of the viewer's
    layer list, connected here to every open viewer, since napari does not say which one
    opened the file (``widgets._hole_outlines``).
    """
    items = read_paths(path)
    if any(_has_holes(item) for item in items):
        from napari_pathreview.widgets._hole_outlines import follow_open_viewers

        follow_open_viewers()
    return items
