"""The Review form's ROI: a saved review's outline shown as a Shapes layer, and the outline
a review would store now.

The outline matters twice. Edited vertices (moved, a shape added or deleted) are the
reviewer's work, so the form compares the picked layer's outline, as the review would store
it, with the one it was filled with. And the "saved ROI" layer of an image shown again is
refilled in place, never removed and re-added: napari runs a full garbage collection on every
layer removal (over half a second with torch loaded, the viewer frozen).
"""

from __future__ import annotations

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

    from napari_pathreview._hole_outlines import show_holes
    from napari_pathreview.io.geojson import parse_geojson_rois
    from napari_pathreview.io.shape_holes import carry_holes

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


def roi_geojson(viewer: Any, name: str | None, image: Any) -> dict[str, Any] | None:
    """The GeoJSON a review of ``image`` stores for the ROI layer ``name`` (None: no ROI).

    Raises:
        InvalidInputError: The layer is a Labels layer, belongs to another image, or holds a
            shape GeoJSON cannot hold.
    """
    if not name or name == NO_ROI or name not in viewer.layers:
        return None
    from napari.layers import Shapes

    from napari_pathreview.io.geojson import rois_to_geojson

    layer = viewer.layers[name]
    if not isinstance(layer, Shapes):
        raise InvalidInputError(
            f"ROI {name!r} is a Labels layer; the review stores Shapes ROIs as GeoJSON — "
            "draw the region with the Shapes tools."
        )
    if not state.belongs_to(layer, image):
        raise InvalidInputError(f"ROI {name!r} belongs to another image; pick this image's.")
    if len(layer.data) == 0:
        return None
    # training, scoring and the queue read these as the image's pixels, whatever the
    # Shapes layer's own scale/translate: convert through the world
    return rois_to_geojson(layer_rois(layer, image))


def outline_now(viewer: Any, name: str | None, image: Any) -> dict[str, Any] | None:
    """:func:`roi_geojson`, or None where it cannot be stored (Save says why)."""
    try:
        return roi_geojson(viewer, name, image)
    except InvalidInputError:
        return None
