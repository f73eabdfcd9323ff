"""A physical scale bar for images whose resolution is known.

The reader records the physical pixel size in the layer metadata (BreaKHis magnification →
µm/px, slide MPP, DICOM pixel spacing, MIAS 0.2 mm/px) and gives the layer that size as its
scale. The scale bar is switched on in µm only when the layer's world scale really is the
physical size; otherwise it would print "150 µm" over 150 pixels of unknown size.

ROIs are stored in their image's pixels whatever their own layer's frame:
:func:`layer_rois` goes from one layer's data coordinates to another's through the world.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_pathreview.widgets._layer_meta import plugin_meta

logger = logging.getLogger(__name__)

_UM_KEYS = ("um_per_px", "microns_per_pixel", "mpp")
_MM_KEYS = ("mm_per_px", "pixel_spacing_mm")


def _first_number(value: Any) -> float | None:
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def pixel_size_um(meta: Mapping[str, Any]) -> float | None:
    """The physical pixel size (µm) a reader recorded in ``metadata["pathreview"]``."""
    for key in _UM_KEYS:
        value = _first_number(meta.get(key))
        if value is not None:
            return value
    for key in _MM_KEYS:
        value = _first_number(meta.get(key))
        if value is not None:
            return value * 1000.0
    return None


def scale_unit(layer: Any) -> str | None:
    """'um' or 'mm' when the layer's world scale is its physical pixel size, else None."""
    current = [str(u) for u in (getattr(layer, "units", None) or ())]
    if current and all(u == "micrometer" for u in current):
        return "um"
    if current and all(u == "millimeter" for u in current):
        return "mm"
    meta = plugin_meta(layer)
    size_um = pixel_size_um(meta)
    if size_um is None:
        return None
    world = float(layer.scale[-1])
    for unit, factor in (("um", 1.0), ("mm", 1000.0)):
        if abs(world * factor - size_um) <= 0.01 * size_um:
            return unit
    logger.info(
        "layer %r: pixel size %.4g µm known but its scale is %.4g; no physical scale bar",
        layer.name,
        size_um,
        world,
    )
    return None


def layer_units(layer: Any) -> tuple[str, ...] | None:
    """The units to give layers drawn over ``layer`` (its own when physical), else None."""
    unit = scale_unit(layer)
    return None if unit is None else (unit,) * len(layer.scale)


def show_scale_bar(viewer: Any, layer: Any) -> bool:
    """Turn napari's scale bar on in the layer's physical unit; returns whether it could.

    napari ≥ 0.6 takes the bar's unit from the layers' ``units`` (all layers must agree), so
    the image gets its physical unit when its scale already is its physical pixel size.
    """
    units = layer_units(layer)
    if units is None:
        return False
    if tuple(str(u) for u in layer.units) != tuple(
        {"um": "micrometer", "mm": "millimeter"}[u] for u in units
    ):
        layer.units = units
    scale_bar(viewer).visible = True
    return True


def scale_bar(viewer: Any) -> Any:
    """napari's scale-bar overlay: in ``viewer.canvas.overlays`` since napari 0.9."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and hasattr(overlays, "scale_bar"):
        return overlays.scale_bar
    return viewer.scale_bar


def fit_view(viewer: Any, layers: list[Any]) -> None:
    """Fit the camera to ``layers``, measured in the viewer's world units.

    napari's ``reset_view(layers=...)`` measures the given layers in their own units: a film
    in mm beside slides in µm was fitted as if its 204.8 mm were 204.8 µm, the view zoomed
    1000× into its corner. The fit is rescaled from their units to the world's.
    """
    viewer.reset_view(layers=layers)
    world, own = viewer.layers.extent.units, viewer.layers.get_extent(layers).units
    if world is None or own is None or tuple(world) == tuple(own):
        return
    pairs = zip(own[-2:], world[-2:], strict=True)
    factors = np.array([(1 * unit).to(target).magnitude for unit, target in pairs])
    camera = viewer_camera(viewer)
    center = np.asarray(camera.center, dtype=float)
    center[-2:] *= factors
    camera.center = tuple(center)
    camera.zoom = camera.zoom / factors.max()


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def data_to_world_matrix(layer: Any) -> np.ndarray:
    """The layer's homogeneous data → world matrix, ``affine · (rotate·shear·scale + translate)``.

    Composed from the public transform properties (napari 0.5–0.9 all have them) so whole
    vertex arrays map at once; napari's ``data_to_world`` takes one point per call.
    """
    from napari.utils.transforms import Affine

    physical = Affine(
        scale=layer.scale, translate=layer.translate, rotate=layer.rotate, shear=layer.shear
    )
    return np.asarray(layer.affine.affine_matrix, float) @ np.asarray(physical.affine_matrix)


def layer_rois(layer: Any, image: Any = None, properties: bool = False) -> list[Any]:
    """A Shapes ``layer``'s shapes as ``io.geojson.Roi``, each with its holes (``io.shape_holes``).

    Args:
        layer: The Shapes layer.
        image: The image layer whose pixels the ROIs are wanted in; None keeps the layer's
            own data coordinates. A Shapes layer need not share its image's frame (napari's
            "new shapes layer" button gives scale 1 over a µm-scaled image), so its data
            coordinates go through the world, the space both layers are shown in; dimensions
            align from the last, and the transforms are built once per call (the live IoU
            calls this on every edit).
        properties: Whether its feature columns become the ROIs' properties.
    """
    from napari_pathreview.io.geojson import rois_from_shapes

    data = list(layer.data)
    holes = settle_layer_holes(layer, data)
    if image is not None:
        source = data_to_world_matrix(layer)
        target = np.linalg.inv(data_to_world_matrix(image))
        data = [_through_world(shape, source, target) for shape in data]
        holes = [tuple(_through_world(ring, source, target) for ring in own) for own in holes]
    columns = layer.features.to_dict(orient="list") if properties else None
    return rois_from_shapes(data, list(layer.shape_type), columns, holes)


def settle_layer_holes(layer: Any, data: list[Any]) -> list[tuple[np.ndarray, ...]]:
    """The holes of each shape (``io.shape_holes.settle_holes``), kept on the layer as now
    placed: a dragged region's holes moved with it, and a hole its reshaped region no longer
    holds dropped, with a napari warning naming the ROI (once: it is gone from the layer)."""
    from napari.utils.notifications import show_warning

    from napari_pathreview.io.shape_holes import dropped_hole_message, settle_holes

    settled = settle_holes(data, list(layer.shape_type), layer.features, layer.metadata)
    if settled.facts is not None and settled.facts != plugin_meta(layer):
        layer.metadata = {**layer.metadata, "pathreview": settled.facts}
    for index in settled.dropped:
        show_warning(dropped_hole_message(layer.name, index, layer.features))
    return settled.holes


#: Decimals of a pixel kept from the world round trip: a MIAS circle at 0.2 mm/px came back
#: 1e-13 px off its file's integers, and the pixels exactly on its edge fell out of the mask,
#: so the dock's IoU disagreed with ``explain`` on the same ROI.
_PIXEL_DECIMALS = 9


def _through_world(vertices: Any, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """N×2 (row, col): ``vertices`` mapped by ``source`` (data → world), then ``target``
    (world → the image's data), rounded to ``_PIXEL_DECIMALS`` so a vertex that lies on
    the image's pixel grid stays exactly on it."""
    points = np.asarray(vertices, dtype=float)
    n = source.shape[0] - 1
    world = points[:, -n:] @ source[:n, :n].T + source[:n, n]
    m = target.shape[0] - 1
    if n >= m:
        world = world[:, -m:]
    else:
        world = np.concatenate([np.zeros((len(world), m - n)), world], axis=1)
    return np.round((world @ target[:m, :m].T + target[:m, m])[:, -2:], _PIXEL_DECIMALS)
