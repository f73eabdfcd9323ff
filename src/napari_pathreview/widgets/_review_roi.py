"""The Review form's ROI: a saved review's outline shown as a Shapes layer, and the outline
a review would store now.

The outline matters twice. Edited vertices (moved, a shape added or deleted) are the
reviewer's work, so the form compares the picked layer's outline, as the review would store
it, with the one it was filled with. And the "saved ROI" layer of an image shown again is
refilled in place, never removed and re-added: napari runs a full garbage collection on every
layer removal (over half a second with torch loaded, the viewer frozen). The form asks for the
outline on every active-layer change, so it is kept (:class:`OutlineCache`) until the layers'
own events say it may have changed.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets import _results
from napari_pathreview.widgets import _review_state as state
from napari_pathreview.widgets._roi_scores import NO_ROI
from napari_pathreview.widgets._scale import layer_rois

SAVED_ROI_PREFIX = "saved ROI · "


def saved_roi_name(image: Any) -> str:
    """The name of the layer showing ``image``'s saved review ROI."""
    return f"{SAVED_ROI_PREFIX}{image.name}"


def show_saved_roi(viewer: Any, image: Any, geojson: Any) -> Any:
    """Show a saved review's ROI ``geojson`` over ``image`` as a Shapes layer; returns it.

    The layer of that name left from an earlier visit takes the outline in place.
    """
    from napari.layers import Shapes

    from napari_pathreview.io.geojson import parse_geojson_rois
    from napari_pathreview.io.shape_holes import carry_holes
    from napari_pathreview.widgets._hole_outlines import show_holes

    rois = parse_geojson_rois(geojson, "saved review ROI")
    name = saved_roi_name(image)
    settings = carry_holes(
        {
            "metadata": {"pathreview": {"kind": "roi", "image": image.name}},
            "scale": image.scale,
            "translate": image.translate,
            **_results.units_of(image),
        },
        rois,
    )
    shapes = [roi.data for roi in rois]
    types = [roi.shape_type for roi in rois]
    show_holes(viewer)
    layer = next((layer for layer in viewer.layers if layer.name == name), None)
    if not isinstance(layer, Shapes):
        if layer is not None:
            viewer.layers.remove(layer)  # not Shapes: it cannot hold the outline
        style = {"edge_color": "lime", "face_color": "transparent"}
        return viewer.add_shapes(shapes, shape_type=types, name=name, **style, **settings)
    layer.metadata = {**layer.metadata, "pathreview": {}}  # the old outline's holes go first
    layer.data = list(zip(shapes, types, strict=True))
    layer.features = settings.get("features", {})
    layer.feature_defaults = settings.get("feature_defaults", {})
    layer.metadata = {**layer.metadata, **settings["metadata"]}
    layer.scale, layer.translate = settings["scale"], settings["translate"]
    if "units" in settings:
        layer.units = settings["units"]
    layer.visible = True
    return layer


def storable_roi(viewer: Any, name: str | None, image: Any) -> Any:
    """The Shapes layer ``name`` a review of ``image`` would store (None: no ROI picked).

    Raises:
        InvalidInputError: The layer is a Labels layer or belongs to another image.
    """
    if not name or name == NO_ROI or name not in viewer.layers:
        return None
    from napari.layers import Shapes

    layer = viewer.layers[name]
    if not isinstance(layer, Shapes):
        raise InvalidInputError(
            f"ROI {name!r} is a Labels layer; the review stores Shapes ROIs as GeoJSON — "
            "draw the region with the Shapes tools."
        )
    if not state.belongs_to(layer, image):
        raise InvalidInputError(f"ROI {name!r} belongs to another image; pick this image's.")
    return layer


def layer_geojson(layer: Any, image: Any) -> dict[str, Any] | None:
    """The Shapes ``layer``'s outline in ``image``'s pixels as GeoJSON (None: no shapes).

    Raises:
        InvalidInputError: A shape GeoJSON cannot hold.
    """
    if len(layer.data) == 0:
        return None
    from napari_pathreview.io.geojson import rois_to_geojson

    # training, scoring and the queue read these as the image's pixels, whatever the
    # Shapes layer's own scale/translate: convert through the world
    return rois_to_geojson(layer_rois(layer, image))


def roi_geojson(viewer: Any, name: str | None, image: Any) -> dict[str, Any] | None:
    """The GeoJSON a review of ``image`` stores for the ROI layer ``name`` (None: no ROI).

    Raises:
        InvalidInputError: The layer is a Labels layer, belongs to another image, or holds a
            shape GeoJSON cannot hold.
    """
    layer = storable_roi(viewer, name, image)
    return None if layer is None else layer_geojson(layer, image)


# what an ROI layer's outline in its image's pixels is built from; its kind and owner are
# judged on every call (they cost nothing)
ROI_EVENTS = ("data", "features", "metadata", "scale", "translate", "rotate", "shear", "affine")
IMAGE_EVENTS = ("scale", "translate", "rotate", "shear", "affine")


class OutlineCache:
    """:func:`roi_geojson` as the form compares it, rebuilt only after the layers changed.

    The Review form compares the picked ROI's outline with the one it was filled with on
    every active-layer change, and building it walks every vertex (settling holes too). The
    outline is kept until one of the layers' own events (:data:`ROI_EVENTS`,
    :data:`IMAGE_EVENTS`) says it may differ; napari's vertex tool fires ``data`` when the drag
    ends. The layers are held weakly (themselves, not napari's proxies of them): a removed image
    is not kept alive by the cache.
    """

    def __init__(self) -> None:
        self._layer: weakref.ref[Any] | None = None
        self._image: weakref.ref[Any] | None = None
        self._outline: dict[str, Any] | None = None
        self._stale = True

    def outline(self, viewer: Any, name: str | None, image: Any) -> dict[str, Any] | None:
        """:func:`roi_geojson` of the ROI layer ``name`` over ``image``, or None where it
        cannot be stored (Save says why)."""
        try:
            layer = storable_roi(viewer, name, image)
        except InvalidInputError:
            return None
        if layer is None:
            return None
        layer, image = _unwrapped(layer), _unwrapped(image)  # the viewer proxies each anew
        if _target(self._layer) is not layer or _target(self._image) is not image:
            self._watch(layer, image)
        if self._stale:
            try:
                outline = layer_geojson(layer, image)  # settling holes fires `metadata`
            except InvalidInputError:
                outline = None
            self._outline, self._stale = outline, False
        return self._outline

    def _mark_stale(self, *_: Any) -> None:
        self._stale = True

    def _watch(self, layer: Any, image: Any) -> None:
        """Follow ``layer`` and ``image`` (and no longer the layers followed before)."""
        for ref, names in ((self._layer, ROI_EVENTS), (self._image, IMAGE_EVENTS)):
            old = _target(ref)
            for name in names if old is not None else ():
                with contextlib.suppress(RuntimeError, TypeError, ValueError):
                    getattr(old.events, name).disconnect(self._mark_stale)
        for new, names in ((layer, ROI_EVENTS), (image, IMAGE_EVENTS)):
            for name in names:
                getattr(new.events, name).connect(self._mark_stale)
        self._layer, self._image = weakref.ref(layer), weakref.ref(image)
        self._stale = True


def _target(ref: weakref.ref[Any] | None) -> Any:
    return None if ref is None else ref()


def _unwrapped(layer: Any) -> Any:
    """The layer itself behind napari's public-only proxy (a new proxy on every lookup)."""
    return getattr(layer, "__wrapped__", layer)
