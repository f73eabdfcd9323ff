"""Turn analysis results into napari layers aligned with the image they explain.

Alignment rule: a result computed on an array of shape (h, w) that covers an image whose
level 0 is (H, W) gets ``scale = image.scale * (H/h, W/w)`` and a translate shifted by half
a coarse pixel, so pixel centres line up in world coordinates whatever the pyramid level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.heatmap import PROBABILITY_LIMITS
from napari_pathreview.widgets._colorbars import sync_colorbars
from napari_pathreview.widgets._layer_meta import plugin_meta
from napari_pathreview.widgets._scale import layer_rois

CAM_COLORMAP = "inferno"
HEATMAP_COLORMAP = "turbo"
#: Fraction of the colour map, from its low end, over which the overlay fades in from clear:
#: low CAM values leave the H&E underneath untouched instead of darkening or tinting it.
FADE_FRACTION = 0.25
CAM_OPACITY = 0.7


def is_image(layer: Any) -> bool:
    """Whether ``layer`` is a napari Image layer (also through napari's plugin proxy)."""
    from napari.layers import Image

    return isinstance(layer, Image)


def is_roi_layer(layer: Any) -> bool:
    """Whether ``layer`` can hold an ROI: a Shapes or Labels layer (proxied or not), other
    than the outlines of another layer's holes (``_hole_outlines``)."""
    from napari.layers import Labels, Shapes

    from napari_pathreview.widgets._hole_outlines import is_hole_outlines

    return isinstance(layer, (Shapes, Labels)) and not is_hole_outlines(layer)


def faded_colormap(name: str) -> Any:
    """napari's ``name`` colour map with a transparent low end (alpha ramps 0 → 1)."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    base = ensure_colormap(name)
    colors = np.array(base.colors, dtype=np.float32)
    ramp = np.clip(np.linspace(0.0, 1.0, len(colors)) / FADE_FRACTION, 0.0, 1.0)
    colors[:, 3] = ramp
    return Colormap(colors=colors, controls=base.controls, name=f"{name} (clear low end)")


def auto_contrast(values: np.ndarray) -> tuple[float, float]:
    """Contrast limits from the 1st to the 99.5th percentile, so a weak map is still seen."""
    finite = np.asarray(values, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [1.0, 99.5]))
    if hi - lo < 1e-6:
        return lo, lo + 1.0
    return lo, hi


def level0_shape(layer: Any) -> tuple[int, int]:
    """(rows, cols) of an image layer's full-resolution level, RGB or not, multiscale or not."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    if len(shape) != 2:
        raise InvalidInputError(
            f"layer {layer.name!r} has shape {tuple(data.shape)}: the Analyze widget classifies "
            "one 2-D image (RGB or grayscale); split stacks or channels into separate layers."
        )
    return shape[-2], shape[-1]


def layer_levels(layer: Any) -> list[Any]:
    """The image data as a list of pyramid levels (one for a plain image)."""
    if getattr(layer, "multiscale", False):
        return list(layer.data)
    return [layer.data]


def aligned_transform(layer: Any, data_shape: Sequence[int]) -> dict[str, tuple[float, float]]:
    """``scale``/``translate`` placing a (h, w) array over the image layer's full extent."""
    rows, cols = level0_shape(layer)
    base_scale = np.asarray(layer.scale[-2:], dtype=float)
    base_translate = np.asarray(layer.translate[-2:], dtype=float)
    factor = np.array([rows / data_shape[0], cols / data_shape[1]], dtype=float)
    scale = base_scale * factor
    translate = base_translate + (factor - 1.0) / 2.0 * base_scale
    return {"scale": tuple(scale.tolist()), "translate": tuple(translate.tolist())}


def units_of(image_layer: Any) -> dict[str, Any]:
    """``{"units": ...}`` for layers drawn over ``image_layer`` (napari wants them to agree)."""
    from napari_pathreview.widgets._scale import layer_units

    units = layer_units(image_layer)
    return {} if units is None else {"units": units}


def match_roi_units(viewer: Any, layer: Any, image_layer: Any) -> bool:
    """Give an ROI layer still in napari's default units ("pixel") the units it is drawn in.

    A Shapes or Labels layer made without units (``viewer.add_shapes()``, a script) beside a
    µm- or mm-scaled image leaves napari's layers with inconsistent units: it warns again at
    every later layer change and drops the scale bar's unit. On the image's grid (same scale)
    the layer takes the image's units; at scale 1 (drawn in world coordinates) the world's, as
    napari's own New Shapes button does. Where it is drawn does not change. Layers with units
    of their own or on another grid are left alone, as are images: a tile without a pixel
    size beside a µm image is a real inconsistency.

    Returns:
        Whether the layer's units were changed.
    """
    if image_layer is None or not is_roi_layer(layer):
        return False
    if any(str(unit) != "pixel" for unit in layer.units):
        return False
    scale = np.asarray(layer.scale[-2:], dtype=float)
    if np.allclose(scale, np.asarray(image_layer.scale[-2:], dtype=float)):
        units = units_of(image_layer).get("units")
    elif np.allclose(scale, 1.0):
        others = [other for other in viewer.layers if other.name != layer.name]  # proxies
        units = viewer.layers.get_extent(others).units if others else None
    else:
        return False
    if not units or len(units) < len(layer.units) or all(str(u) == "pixel" for u in units):
        return False
    layer.units = tuple(units)[-len(layer.units) :]
    return True


def _upsert_image(viewer: Any, name: str, data: np.ndarray, **kwargs: Any) -> Any:
    """Replace the data of the layer called ``name`` or add it; returns the layer.

    Pass ``metadata`` here, not afterwards: napari selects a new layer as it inserts it, and
    the docks take a selected layer without a plugin ``kind`` for an image the user opened.
    """
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        for key, value in kwargs.items():
            setattr(layer, key, value)
        return layer
    return viewer.add_image(data, name=name, **kwargs)


def cam_layer_name(image_layer: Any, method: str = "cam", target: str = "") -> str:
    """'CAM gradcam → malignant · image': the method and the class explained, for the list."""
    what = f"{method} → {target}" if target else method
    return f"CAM {what} · {image_layer.name}"


#: Result-layer metadata keys naming the file their image showed (the layer's own
#: ``source_path`` and ``sha256``): a queue reuses one layer, and two files of one name in
#: different folders give layers of the same name.
_IDENTITY = {"image_source": "source_path", "image_sha256": "sha256"}


def image_ref(image_layer: Any) -> dict[str, Any]:
    """The metadata that ties a result layer to ``image_layer``: its name and its file."""
    meta = plugin_meta(image_layer)
    return {"image": image_layer.name, **{k: meta.get(v) for k, v in _IDENTITY.items()}}


def made_on(meta: Mapping[str, Any], image_layer: Any) -> bool:
    """Whether result metadata ``meta`` is ``image_layer``'s: same name and, where both sides
    know it, the same file (a leftover CAM of another file of that name is not)."""
    now = image_ref(image_layer)
    if meta.get("image") != now["image"]:
        return False
    was_sha, was_path = meta.get("image_sha256"), meta.get("image_source")
    if was_sha and now["image_sha256"]:
        return bool(was_sha == now["image_sha256"])
    if was_path and now["image_source"]:  # one file opened by two spellings of its path
        return Path(was_path).resolve() == Path(now["image_source"]).resolve()
    return True


def image_shown(viewer: Any, meta: Mapping[str, Any]) -> bool:
    """Whether the image a result layer (``meta``) was made on is in the viewer now."""
    name = meta.get("image")
    return bool(name) and name in viewer.layers and made_on(meta, viewer.layers[name])


def cam_layer_of(viewer: Any, image_layer: Any) -> Any:
    """The CAM layer shown over ``image_layer`` (there is one per image), or None."""
    for layer in viewer.layers:
        meta = plugin_meta(layer)
        if meta.get("kind") == "cam" and made_on(meta, image_layer):
            return layer
    return None


def heatmap_layer_name(image_layer: Any) -> str:
    return f"tile probability · {image_layer.name}"


def adopt_orphan(viewer: Any, kind: str) -> Any:
    """A result layer of ``kind`` whose image is gone (the queue moved on), to reuse.

    Removing a layer makes napari run a full garbage collection (seconds with torch
    loaded, a frozen UI); reusing the previous image's CAM layer avoids it.
    """
    for layer in viewer.layers:
        meta = plugin_meta(layer)
        if meta.get("kind") == kind and not image_shown(viewer, meta):
            layer.visible = True
            return layer
    return None


def add_cam_layer(
    viewer: Any,
    image_layer: Any,
    cam: np.ndarray,
    method: str = "cam",
    target: str = "",
    opacity: float = CAM_OPACITY,
) -> Any:
    """Show a CAM (H×W in [0, 1]) over its image, replacing that image's previous CAM.

    Translucent (not additive) blending with a colour map whose low end is clear: on bright
    H&E an additive inferno map is nearly invisible, and a dark low end hides the tissue.
    Its colour bar is shown while it is the map in view (:func:`sync_colorbars`).
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise InvalidInputError(f"a CAM must be 2-D, got shape {cam.shape}")
    name = cam_layer_name(image_layer, method, target)
    previous = cam_layer_of(viewer, image_layer) or adopt_orphan(viewer, "cam")
    if previous is not None and previous.name != name:
        previous.name = name
    layer = _upsert_image(
        viewer,
        name,
        cam,
        colormap=faded_colormap(CAM_COLORMAP),
        opacity=float(opacity),
        blending="translucent",
        contrast_limits=auto_contrast(cam),
        **aligned_transform(image_layer, cam.shape),
        **units_of(image_layer),
        metadata={
            "pathreview": {
                "kind": "cam",
                "method": method,
                "target": target,
                **image_ref(image_layer),
            }
        },
    )
    sync_colorbars(viewer)
    return layer


def add_tile_heatmap(viewer: Any, image_layer: Any, tiled: Any, classes: Sequence[str]) -> Any:
    """Show the tile probability of the positive class (the last) over a large image."""
    maps = np.asarray(tiled.prob_maps, dtype=np.float32)
    if maps.ndim != 3:
        raise InvalidInputError(f"tile probability maps must be C×h×w, got {maps.shape}")
    positive = maps[-1]
    base_scale = np.asarray(image_layer.scale[-2:], dtype=float)
    base_translate = np.asarray(image_layer.translate[-2:], dtype=float)
    name = heatmap_layer_name(image_layer)
    orphan = None if name in viewer.layers else adopt_orphan(viewer, "tile_probability")
    if orphan is not None:
        orphan.name = name
    layer = _upsert_image(
        viewer,
        name,
        positive,
        colormap=faded_colormap(HEATMAP_COLORMAP),
        opacity=CAM_OPACITY,
        blending="translucent",
        contrast_limits=PROBABILITY_LIMITS,
        # the tiler gives cell size and cell (0, 0)'s centre in level-0 pixels
        scale=tuple((base_scale * np.asarray(tiled.scale, dtype=float)).tolist()),
        translate=tuple(
            (base_translate + np.asarray(tiled.translate, dtype=float) * base_scale).tolist()
        ),
        **units_of(image_layer),
        metadata={
            "pathreview": {
                "kind": "tile_probability",
                "class": list(classes)[-1],
                **image_ref(image_layer),
            }
        },
    )
    sync_colorbars(viewer)
    return layer


def roi_events(layer: Any) -> list[Any]:
    """The events that mean 'the ROI changed': data, plus painting for a Labels layer."""
    names = ("data", "paint", "labels_update")
    return [getattr(layer.events, n) for n in names if hasattr(layer.events, n)]


def roi_mask(roi_layer: Any, image_layer: Any) -> np.ndarray:
    """A boolean mask of the ROI on the image's level-0 grid, from a Shapes or Labels layer."""
    from napari.layers import Labels, Shapes

    shape = level0_shape(image_layer)
    if isinstance(roi_layer, Shapes):  # holes cut out as for `explain --roi` (one rule)
        from napari_pathreview.explain.masks import mask_from_rois

        return mask_from_rois(layer_rois(roi_layer, image_layer), shape)
    if isinstance(roi_layer, Labels):
        labels = np.asarray(roi_layer.data[0] if roi_layer.multiscale else roi_layer.data)
        mask = labels > 0
        if mask.shape != shape:
            from skimage.transform import resize

            mask = resize(mask, shape, order=0, preserve_range=True, anti_aliasing=False) > 0.5
        return mask
    kind = type(getattr(roi_layer, "__wrapped__", roi_layer)).__name__
    raise InvalidInputError(
        f"layer {roi_layer.name!r} is a {kind} layer; choose a Shapes or Labels layer."
    )
