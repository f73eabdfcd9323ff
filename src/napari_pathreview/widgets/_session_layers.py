"""The layers of a saved session, put back one entry at a time by the rule the docks' settings
follow (:mod:`._session_keys`).

A layer that cannot be made as it was saved is named (``layers[2] (image 'case_1')``) and left
out: an entry that is not an object or of a type this version does not know, a key it needs that
is missing or refused, an image whose file is gone, a CAM whose image is not open, a CAM or heat
map whose image now has another shape than when it was saved (its arrays would lie misaligned).
A key a layer can do without (visibility, opacity, a pixel size) that is refused is named and
left at the layer's default; a key this version does not know is named and ignored. The other
layers and the docks' settings are restored, and one warning names the session file and all.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets import _recall
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._session import IMAGE_SHAPE, image_shape
from napari_pathreview.widgets._session_keys import SkippedSettings, boolean, number, text

#: Per entry type: the keys without which the layer is left out, then those it can do without.
REQUIRED: dict[str, tuple[str, ...]] = {
    "image": ("path",),
    "cam": ("image", "array"),
    "tile_map": (
        "name",
        "array",
        "scale",
        "translate",
        "units",
        "colormap",
        "contrast_limits",
        "opacity",
        "blending",
        "metadata",
    ),
    "roi": ("name", "geojson"),
    "labels": ("name", "array"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "image": ("name", "prediction", "um_per_px", "visible"),
    "cam": ("method", "target", "opacity", IMAGE_SHAPE, "visible"),
    "tile_map": ("image", IMAGE_SHAPE, "visible"),
    "roi": ("image", "visible"),
    "labels": ("image", "scale", "translate", "visible"),
}
LEFT_OUT = "; the layer is left out"


class LayerRefused(InvalidInputError):
    """One saved layer cannot be restored as it was saved (the message says why)."""


def restore(
    viewer: Any, entries: list[Any], arrays: Mapping[str, Any], skipped: SkippedSettings
) -> None:
    """Put back each layer entry in order (images first in the file, so what is drawn over
    them finds them); each one refused is noted in ``skipped`` and the rest go on."""
    for index, entry in enumerate(entries):
        where = _where(index, entry)
        if not isinstance(entry, Mapping):
            skipped.problems.append(f"{where}: must be an object describing a layer, got {entry!r}")
            continue
        kind = entry.get("type")
        if kind not in REQUIRED:
            known = ", ".join(REQUIRED)
            skipped.problems.append(f"{where}: type {kind!r} is not one of {known}{LEFT_OUT}")
            continue
        skipped.known(entry, "type", *REQUIRED[kind], *OPTIONAL[kind])
        skipped.attempt(
            where, partial(_restore_one, viewer, where, entry, arrays, skipped), LEFT_OUT
        )
        skipped.unknown(f"layers[{index}]", entry)


def _where(index: int, entry: Any) -> str:
    """``layers[2] (image 'case_1')``: the entry's place in the file, its type and name."""
    if not isinstance(entry, Mapping):
        return f"layers[{index}]"
    kind = str(entry.get("type", "layer")).replace("_", " ")
    name = entry.get("name")
    if kind == "cam" and isinstance(entry.get("image"), str):
        return f"layers[{index}] (CAM of {entry['image']!r})"
    return (
        f"layers[{index}] ({kind} {name!r})"
        if isinstance(name, str)
        else f"layers[{index}] ({kind})"
    )


def _restore_one(
    viewer: Any, where: str, entry: Mapping[str, Any], arrays: Mapping[str, Any], skipped: Any
) -> None:
    missing = [key for key in REQUIRED[entry["type"]] if key not in entry]
    if missing:
        raise LayerRefused(f"no {', '.join(repr(k) for k in missing)}")
    restorer = {
        "image": _restore_image,
        "cam": _restore_cam,
        "tile_map": _restore_tile_map,
        "roi": _restore_roi,
        "labels": _restore_labels,
    }[entry["type"]]
    layer = restorer(viewer, where, entry, arrays, skipped)
    if layer is not None:
        skipped.put(_key(where, "visible"), entry, "visible", partial(_show, layer))


def _key(where: str, name: str) -> str:
    """``layers[2].visible (image 'case_1')``: one key of an entry."""
    place, _, what = where.partition(" ")
    return f"{place}.{name} {what}".rstrip()


def _show(layer: Any, visible: Any) -> None:
    layer.visible = boolean(visible)


def _text(entry: Mapping[str, Any], key: str) -> str:
    """A key the layer needs that holds text (a name, a path)."""
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise LayerRefused(f"{key!r} must be text, got {value!r}")
    return value


def _array(entry: Mapping[str, Any], arrays: Mapping[str, Any]) -> np.ndarray:
    """The entry's saved array (from the ``.cams.npz`` beside the session file)."""
    name = _text(entry, "array")
    if name not in arrays:
        raise LayerRefused(f"its array {name!r} is not in the session's arrays file")
    return np.asarray(arrays[name])


def _fits_its_image(viewer: Any, entry: Mapping[str, Any], what: str) -> None:
    """Refuse arrays fitted to an image of another shape than the one now open by its name:
    the file at the image's path was replaced since the save (a session saved before the shape
    was kept is not checked)."""
    saved, now = entry.get(IMAGE_SHAPE), image_shape(viewer, entry.get("image"))
    if saved is None or now is None:
        return
    if not (
        isinstance(saved, list)
        and len(saved) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in saved)
    ):
        raise LayerRefused(f"{IMAGE_SHAPE!r} must be [rows, cols], got {saved!r}")
    if saved != now:
        raise LayerRefused(
            f"its {what} was made on a {_shape(saved)} image, but {entry['image']!r} is now "
            f"{_shape(now)} (its file was replaced since the save); run Analyze again"
        )


def _shape(value: list[int]) -> str:
    return "×".join(str(v) for v in value)


def _restore_image(
    viewer: Any, where: str, entry: Mapping[str, Any], arrays: Mapping[str, Any], skipped: Any
) -> Any:
    """Reopen the image from its file; its prediction and a pixel size set in the dock
    come back over it."""
    from pathlib import Path

    from napari_pathreview.widgets import _results

    name: list[str] = []
    skipped.put(_key(where, "name"), entry, "name", lambda value: name.append(text(value)))
    if name and name[0] in viewer.layers:
        return None  # already open here: not opened twice
    path = Path(_text(entry, "path"))
    if not path.is_file():
        raise LayerRefused(f"its file {path} is gone; move it back or open the image again")
    opened = viewer.open(str(path), plugin="napari-pathreview")
    image = next(layer for layer in opened if _results.is_image(layer))
    if "name" not in entry:  # the layers drawn over it name it: say under which name it came
        skipped.problems.append(f"{_key(where, 'name')}: missing; opened as {image.name!r}")
    skipped.put(_key(where, "prediction"), entry, "prediction", partial(_predicted, image))
    if entry.get("um_per_px") is not None:  # set in the dock: over the file's
        from napari_pathreview.widgets._pixel_size import set_pixel_size

        size = partial(set_pixel_size, viewer, image)
        skipped.put(_key(where, "um_per_px"), entry, "um_per_px", size)
    return image


def _predicted(image: Any, record: Any) -> None:
    if record is None:
        return
    if not isinstance(record, Mapping):
        raise TypeError(f"must be an object (the saved prediction), got {record!r}")
    meta = plugin_meta(image)
    meta["prediction"] = _recall.from_session(record)
    image.metadata = {**image.metadata, "pathreview": meta}


def _restore_cam(
    viewer: Any, where: str, entry: Mapping[str, Any], arrays: Mapping[str, Any], skipped: Any
) -> Any:
    """The CAM over its image, as Analyze draws one (stretched over the image's extent)."""
    from napari_pathreview.widgets import _results

    image_name = _text(entry, "image")
    if image_name not in viewer.layers:
        raise LayerRefused(f"its image {image_name!r} is not open (not restored)")
    cam = _array(entry, arrays)
    if cam.ndim != 2 or 0 in cam.shape:
        raise LayerRefused(f"its CAM must be a 2-D map, got an array of shape {cam.shape}")
    _fits_its_image(viewer, entry, "CAM")
    looks: dict[str, Any] = {"method": "cam", "target": "", "opacity": _results.CAM_OPACITY}
    for key, check in (("method", text), ("target", text), ("opacity", _opacity)):
        skipped.put(_key(where, key), entry, key, partial(_keep, looks, key, check))
    return _results.add_cam_layer(
        viewer,
        viewer.layers[image_name],
        cam,
        looks["method"],
        looks["target"],
        opacity=looks["opacity"],
    )


def _keep(into: dict[str, Any], key: str, check: Any, value: Any) -> None:
    into[key] = check(value)


def _opacity(value: Any) -> float:
    opacity = number(value)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value!r}")
    return opacity


def _restore_tile_map(
    viewer: Any, where: str, entry: Mapping[str, Any], arrays: Mapping[str, Any], skipped: Any
) -> Any:
    """A slide's tile heat map, drawn as it was saved (``_session._placed``): where it lay,
    its colour map and contrast (absolute: its slide reopens at the same scale)."""
    from napari.utils.colormaps import Colormap

    from napari_pathreview.widgets._colorbars import sync_colorbars

    name = _text(entry, "name")
    if name in viewer.layers:
        return None
    data = _array(entry, arrays)
    if data.ndim != 2 or 0 in data.shape:
        raise LayerRefused(f"its heat map must be a 2-D map, got an array of shape {data.shape}")
    _fits_its_image(viewer, entry, "heat map")
    if not isinstance(entry["metadata"], Mapping) or not isinstance(entry["colormap"], Mapping):
        raise LayerRefused("its 'metadata' and 'colormap' must be objects")
    layer = viewer.add_image(
        data,
        name=name,
        scale=entry["scale"],
        translate=entry["translate"],
        units=tuple(entry["units"]),
        colormap=Colormap(**entry["colormap"]),
        contrast_limits=entry["contrast_limits"],
        opacity=_opacity(entry["opacity"]),
        blending=_text(entry, "blending"),
        interpolation2d="nearest",
        metadata={"pathreview": dict(entry["metadata"])},
    )
    sync_colorbars(viewer)
    return layer


def _over(viewer: Any, entry: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The image an ROI was drawn over, when open, and the layer metadata tying it to it."""
    image = entry.get("image")
    layer = viewer.layers[image] if isinstance(image, str) and image in viewer.layers else None
    return layer, {"pathreview": {"kind": "roi", "image": image}}


def _restore_roi(
    viewer: Any, where: str, entry: Mapping[str, Any], arrays: Mapping[str, Any], skipped: Any
) -> Any:
    """A drawn Shapes ROI, in its image's pixels (or its own frame, saved without one)."""
    from napari_pathreview.io.geojson import geojson_frame, parse_geojson_rois
    from napari_pathreview.io.shape_holes import carry_holes
    from napari_pathreview.widgets._hole_outlines import show_holes
    from napari_pathreview.widgets._results import units_of

    name = _text(entry, "name")
    if name in viewer.layers:
        return None
    image, meta = _over(viewer, entry)
    place = {} if image is None else {"scale": image.scale, "translate": image.translate}
    extra = {} if image is None else units_of(image)
    rois = parse_geojson_rois(entry["geojson"], f"session ROI {name}")
    own = geojson_frame(entry["geojson"], f"session ROI {name}")  # saved without its image
    if own:
        place, extra = own, {}
    kwargs = {
        "shape_type": [roi.shape_type for roi in rois],
        "name": name,
        "edge_color": "lime",
        "face_color": "transparent",
        "metadata": meta,
        **place,
        **extra,
    }
    show_holes(viewer)
    return viewer.add_shapes([roi.data for roi in rois], **carry_holes(kwargs, rois))


def _restore_labels(
    viewer: Any, where: str, entry: Mapping[str, Any], arrays: Mapping[str, Any], skipped: Any
) -> Any:
    """A drawn Labels layer where it lay (its own scale and offset)."""
    from napari_pathreview.widgets._results import units_of

    name = _text(entry, "name")
    if name in viewer.layers:
        return None
    image, meta = _over(viewer, entry)
    return viewer.add_labels(
        _array(entry, arrays),
        name=name,
        scale=entry.get("scale"),
        translate=entry.get("translate"),
        metadata=meta,
        **({} if image is None else units_of(image)),
    )
