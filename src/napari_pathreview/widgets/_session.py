"""Save and restore a review session: open images, ROI layers, CAMs, slide heat maps, queue
position, settings.

Qt-free: a session is a JSON document (plus an ``.npz`` beside it holding the CAM and heat-map
arrays),
so a reviewer closes napari at night and resumes tomorrow exactly where they stopped. Paths
are stored absolute; an image that moved is named and left out when the session is restored
(``widgets._session_layers``), the rest restored.
Both files are written beside their targets and moved into place, the JSON last, and the JSON
names its arrays file's save: a save cut off part way leaves the previous session whole, never
half a file, nor a JSON read with another save's arrays.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview._atomic import write_atomically
from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io.shape_holes import HOLES_KIND
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._recall import for_session
from napari_pathreview.widgets._scale import layer_rois

logger = logging.getLogger(__name__)

FORMAT = "napari-pathreview-session"
VERSION = 2
"""2: ROI GeoJSON in QuPath's pixel convention (``io.geojson.PIXEL_ORIGIN_KEY``); 1: napari's."""
SAVE_KEY = "save_id"
"""The JSON's and its arrays file's mark of one save (absent in sessions saved before it)."""
DOCUMENT_KEYS = ("format", "version", "layers", SAVE_KEY)
"""The document's own keys, besides the docks' settings (``widgets._session_keys``)."""
IMAGE_SHAPE = "image_shape"
"""A CAM's or heat map's image's level-0 [rows, cols] when saved: what its arrays were fitted to
(``widgets._session_layers`` refuses them over an image of another shape)."""


class SessionError(InvalidInputError):
    """A session file cannot be read, is not a session, or its arrays file is gone or another
    save's."""


def cams_path(path: Path) -> Path:
    """Where a session's CAM arrays live: ``review.session.json`` → ``review.session.cams.npz``."""
    return path.with_name(path.name.removesuffix(".json") + ".cams.npz")


def _jsonable(value: Any) -> Any:
    """A metadata value made JSON-safe (numpy scalars and tuples included)."""
    return json.loads(
        json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


def _drawn(layer: Any, meta: Mapping[str, Any]) -> bool:
    """A layer the reviewer made (not opened from a file, which is reopened instead, nor the
    outlines of an ROI's holes, which come back with their ROI)."""
    if meta.get("kind") == HOLES_KIND:
        return False
    return not meta.get("source_path") and not meta.get("dataset")


def image_shape(viewer: Any, name: Any) -> list[int] | None:
    """The level-0 [rows, cols] of the open image ``name`` (None: no such 2-D image open)."""
    from napari_pathreview.widgets._results import level0_shape

    if not isinstance(name, str) or name not in viewer.layers:
        return None
    try:
        return list(level0_shape(viewer.layers[name]))
    except InvalidInputError:  # a stack: no CAM or heat map is fitted to one
        return None


def capture_layers(viewer: Any) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The session's layer entries and CAM arrays, in layer order.

    Images are stored by file (with their prediction), user-drawn Shapes ROIs as GeoJSON,
    CAMs as arrays; layers opened from files come back by reopening the file.
    """
    from napari.layers import Image, Labels, Shapes

    entries: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for layer in viewer.layers:
        meta = plugin_meta(layer)
        if isinstance(layer, Image) and meta.get("kind") is None and meta.get("source_path"):
            entries.append(
                {
                    "type": "image",
                    "name": layer.name,
                    "path": str(Path(meta["source_path"]).resolve()),
                    "prediction": _jsonable(for_session(meta.get("prediction"))),
                    "visible": bool(layer.visible),
                    # a pixel size the user typed (the file has none) is not in the file
                    "um_per_px": (
                        meta.get("um_per_px") if meta.get("um_per_px_source") == "user" else None
                    ),
                }
            )
        elif isinstance(layer, Image) and meta.get("kind") == "cam":
            key = f"cam_{len(arrays)}"
            arrays[key] = np.asarray(layer.data, dtype=np.float32)
            entries.append(_cam_entry(viewer, layer, meta, key))
        elif isinstance(layer, Image) and meta.get("kind") == "tile_probability":
            key = f"tiles_{len(arrays)}"
            arrays[key] = np.asarray(layer.data, dtype=np.float32)
            shape = image_shape(viewer, meta.get("image"))
            entries.append(
                {"type": "tile_map", "array": key, IMAGE_SHAPE: shape, **_placed(layer, meta)}
            )
        elif _drawn(layer, meta) and isinstance(layer, Shapes) and len(layer.data):
            entries.append(
                {
                    "type": "roi",
                    "name": layer.name,
                    "image": meta.get("image"),
                    "geojson": _roi_geojson(viewer, layer, meta.get("image")),
                    "visible": bool(layer.visible),
                }
            )
        elif _drawn(layer, meta) and isinstance(layer, Labels):
            key = f"labels_{len(arrays)}"
            arrays[key] = np.asarray(layer.data)
            entries.append(
                {
                    "type": "labels",
                    "name": layer.name,
                    "image": meta.get("image"),
                    "array": key,
                    "scale": [float(v) for v in layer.scale],
                    "translate": [float(v) for v in layer.translate],
                    "visible": bool(layer.visible),
                }
            )
    return entries, arrays


def _cam_entry(viewer: Any, layer: Any, meta: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A CAM layer: its array's key, its image (by name, and that image's shape now) and looks."""
    return {
        "type": "cam",
        "array": key,
        "image": meta.get("image"),
        IMAGE_SHAPE: image_shape(viewer, meta.get("image")),
        "method": meta.get("method", "cam"),
        "target": meta.get("target", ""),
        "opacity": float(layer.opacity),
        "visible": bool(layer.visible),
    }


def _roi_geojson(viewer: Any, layer: Any, image_name: str | None) -> dict[str, Any]:
    """A drawn ROI in its image's pixels (restored on the image's frame); with no image in
    the viewer, in its own data coordinates with its own frame (restored on that frame)."""
    from napari_pathreview.io.geojson import frame_of, rois_to_geojson

    if image_name and image_name in viewer.layers:
        return rois_to_geojson(layer_rois(layer, viewer.layers[image_name]))
    frame = {"scale": layer.scale, "translate": layer.translate, "units": layer.units}
    return rois_to_geojson(layer_rois(layer), frame_of(frame))


def _placed(layer: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What redraws a slide's tile heat map as it was: where it lies (absolute: its slide
    reopens at the same scale), its colour map (the clear low end is not a named one) and
    contrast, and its plugin metadata."""
    colormap = layer.colormap
    return {
        "name": layer.name,
        "image": meta.get("image"),
        "metadata": _jsonable(meta),
        "scale": [float(v) for v in layer.scale],
        "translate": [float(v) for v in layer.translate],
        "units": [str(u) for u in layer.units],
        "colormap": {
            "name": colormap.name,
            "colors": np.asarray(colormap.colors).tolist(),
            "controls": np.asarray(colormap.controls).tolist(),
        },
        "contrast_limits": [float(v) for v in layer.contrast_limits],
        "opacity": float(layer.opacity),
        "blending": str(layer.blending),
        "visible": bool(layer.visible),
    }


def write_session(path: str | Path, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Write the session JSON (and its CAM arrays), each atomically, the JSON last; returns
    the JSON path."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path.with_suffix(".json")
    save_id = uuid.uuid4().hex
    document = {"format": FORMAT, "version": VERSION, SAVE_KEY: save_id, **state}
    text = json.dumps(document, indent=2)  # before any file is touched: a bad value stops here
    path.parent.mkdir(parents=True, exist_ok=True)
    target = cams_path(path)
    if arrays:
        saved = {SAVE_KEY: np.array(save_id), **{k: np.asarray(v) for k, v in arrays.items()}}
        write_atomically(target, lambda handle: np.savez_compressed(handle, **saved))
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    if not arrays:
        target.unlink(missing_ok=True)  # after the JSON: the old one's arrays until it is replaced
    return path


def _read_arrays(path: Path, document: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The session's arrays; refused when they belong to another save of the same name
    (a session that needs none ignores a stale arrays file)."""
    layers = document.get("layers") or []
    needed = any(isinstance(entry, dict) and "array" in entry for entry in layers)
    if not needed:
        return {}
    if not cams_path(path).is_file():
        raise SessionError(
            f"{path}: its arrays file {cams_path(path).name} (CAMs, heat maps, labels) is "
            "missing; keep it beside the session file"
        )
    with np.load(cams_path(path)) as data:
        arrays = {key: np.asarray(data[key]) for key in data.files}
    saved = arrays.pop(SAVE_KEY, None)
    if SAVE_KEY in document and (saved is None or str(saved) != document[SAVE_KEY]):
        raise SessionError(
            f"{path}: its arrays file {cams_path(path).name} is from another save (a save cut "
            "off part way); save the session again, or open the images afresh"
        )
    return arrays


def _mark_napari_origin(layers: list[Any]) -> None:
    """Tag a version-1 session's ROIs as napari coordinates, what they were written in, so
    they reopen over the same pixels."""
    from napari_pathreview.io.geojson import PIXEL_ORIGIN_KEY
    from napari_pathreview.io.pixel_origin import CENTRE

    for entry in layers:
        if isinstance(entry, dict) and isinstance(entry.get("geojson"), dict):
            entry["geojson"].setdefault(PIXEL_ORIGIN_KEY, CENTRE)


def read_session(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a session and its arrays (its layer entries are checked one by one as they are
    restored: ``widgets._session_layers``).

    Raises:
        SessionError: naming the file or the key that is wrong.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SessionError(f"cannot read session {path}: {error}") from error
    except json.JSONDecodeError as error:
        raise SessionError(f"{path} is not a session file (not JSON: {error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SessionError(f"{path} is not a napari-pathreview session (no 'format': '{FORMAT}')")
    if int(document.get("version", 0)) > VERSION:
        raise SessionError(f"{path} was written by a newer napari-pathreview; upgrade to open it")
    layers = document.get("layers", [])
    if not isinstance(layers, list):
        raise SessionError(f"{path}: 'layers' must be a list")
    if int(document.get("version", 0)) < 2:
        _mark_napari_origin(layers)
    return document, _read_arrays(path, document)
