"""Slide-engine events as napari layer data, without importing napari or Qt.

The widget calls :func:`heatmap_layer` on ``SlideStart`` (an empty map the size of the grid,
placed over the slide), :func:`fill_heatmap` on each ``SlideBatch`` (writes the batch's
cells in place) and :func:`tissue_layer` for the optional
tissue Labels layer. Each returns napari ``LayerData`` tuples or plain arrays, so they are
tested here without a viewer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "HEATMAP_COLORMAP",
    "PROBABILITY_LIMITS",
    "fill_heatmap",
    "heatmap_layer",
    "heatmap_name",
    "tissue_layer",
]

HEATMAP_COLORMAP: dict[str, Any] = {
    "name": "pathreview-heat",
    "colors": [
        [0.0, 0.0, 0.0, 0.0],  # the low end is transparent: the slide shows through
        [0.10, 0.25, 0.90, 0.35],
        [0.10, 0.80, 0.60, 0.55],
        [1.00, 0.85, 0.10, 0.75],
        [0.90, 0.10, 0.10, 0.90],
    ],
    "controls": [0.0, 0.15, 0.45, 0.75, 1.0],
}
"""A napari colormap dict: transparent → blue → green → yellow → red."""

PROBABILITY_LIMITS = (0.0, 1.0)
"""A probability map's contrast limits, fixed: a colour means the same probability on every
slide and image. Limits fitted to each map's percentiles painted a benign slide whose tiles
all read 0.47–0.48 bright red, below the model's own threshold."""


def heatmap_name(model_ref: str, class_name: str, um_per_px: float | None) -> str:
    """The layer name: model, class and the resolution the model saw."""
    where = f"{um_per_px:.3g} µm/px" if um_per_px else "preview"
    return f"P({class_name}) · {model_ref} · {where}"


def heatmap_layer(
    start: Any,
    class_name: str,
    base_scale: tuple[float, float] = (1.0, 1.0),
    image: str | None = None,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """An empty heatmap (0 = not classified yet: below the limits, drawn transparent).

    Args:
        start: The ``SlideStart`` event.
        class_name: The class whose probability is shown.
        base_scale: The slide layer's own ``scale`` (e.g. µm per level-0 pixel), so the map
            lands on it whatever world units the viewer uses.
        image: The slide layer's name, recorded as the map's owner (sessions save it).
    """
    grid = start.grid
    data = np.zeros(grid.shape, np.float32)
    scale = (grid.cell[0] * base_scale[0], grid.cell[1] * base_scale[1])
    translate = (grid.translate[0] * base_scale[0], grid.translate[1] * base_scale[1])
    kwargs = {
        "name": heatmap_name(start.model_ref, class_name, grid.um_per_px),
        "scale": scale,
        "translate": translate,
        "colormap": HEATMAP_COLORMAP,
        "contrast_limits": PROBABILITY_LIMITS,
        "blending": "translucent",
        "interpolation2d": "nearest",
        "metadata": {
            "pathreview": {
                "kind": "tile_probability",
                "class": class_name,
                "model": start.model_ref,
                "um_per_px": grid.um_per_px,
                "cell_level0_px": list(grid.cell),
                "image": image,
            }
        },
    }
    return data, kwargs, "image"


def fill_heatmap(data: np.ndarray, batch: Any, class_index: int) -> None:
    """Write a ``SlideBatch``'s probabilities into ``data`` (the layer keeps its limits, so a
    contrast the user set while it streams stays)."""
    if len(batch.rows):
        data[batch.rows, batch.cols] = batch.probabilities[:, class_index]


def tissue_layer(
    tissue: Any, base_scale: tuple[float, float] = (1.0, 1.0), max_side: int = 512
) -> tuple[np.ndarray, dict[str, Any], str]:
    """The tissue mask as a Labels layer over the slide (1 = tissue), at most ``max_side`` px.

    The mask is subsampled for display: a large Labels layer stalls napari's first draw.
    """
    step = max(1, -(-max(tissue.mask.shape) // max_side))
    mask = tissue.mask[::step, ::step]
    down = (tissue.downsample[0] * step, tissue.downsample[1] * step)
    scale = (down[0] * base_scale[0], down[1] * base_scale[1])
    translate = ((down[0] - 1) / 2 * base_scale[0], (down[1] - 1) / 2 * base_scale[1])
    kwargs = {
        "name": "tissue",
        "scale": scale,
        "translate": translate,
        "opacity": 0.3,
        "visible": False,
        "metadata": {"pathreview": {"kind": "tissue"}},
    }
    return mask.astype(np.uint8), kwargs, "labels"


class HeatmapStream:
    """Keeps one heatmap layer in step with a running slide: created on start, filled per batch.

    Duck-typed on napari's viewer and layer API (``add_image``, ``layers``, ``refresh``), so it
    needs no napari import; the Analyze widget feeds it the engine's events in the main thread.

    Args:
        viewer: The napari viewer.
        image_layer: The slide layer the map is drawn over (its scale/translate are honoured).
        class_name: The class shown, or None for the last class (the positive one).
        show_tissue: Also add the slide's tissue mask as a (hidden) Labels layer.
    """

    def __init__(
        self,
        viewer: Any,
        image_layer: Any,
        class_name: str | None = None,
        show_tissue: bool = False,
    ) -> None:
        self.viewer = viewer
        self.show_tissue = show_tissue
        self.image_layer = image_layer
        self.class_name = class_name
        self.layer: Any = None
        self.tissue: Any = None
        self.data: np.ndarray | None = None
        self.class_index = -1
        self.complete = False

    def feed(self, event: Any) -> None:
        """Handle a ``SlideStart`` (add the empty layer) or a ``SlideBatch`` (fill it in)."""
        if hasattr(event, "grid") and hasattr(event, "n_tiles"):
            self._start(event)
        elif self.data is not None and hasattr(event, "probabilities"):
            fill_heatmap(self.data, event, self.class_index)
            self.layer.refresh()

    def _start(self, start: Any) -> None:
        name = self.class_name if self.class_name in start.classes else start.classes[-1]
        self.class_index = list(start.classes).index(name)
        base_scale = tuple(float(v) for v in self.image_layer.scale[-2:])
        base_translate = np.asarray(self.image_layer.translate[-2:], float)
        # the slide's own units too: a layer in pixels beside one in µm leaves napari without
        # world units ("Inconsistent units across layers"), and the scale bar without its unit
        units = {"units": tuple(self.image_layer.units[-2:])}
        data, kwargs, _ = heatmap_layer(start, name, base_scale, self.image_layer.name)
        kwargs["translate"] = tuple((np.asarray(kwargs["translate"]) + base_translate).tolist())
        kwargs.update(units)
        if kwargs["name"] in self.viewer.layers:
            self.viewer.layers.remove(kwargs["name"])
        self.layer = self.viewer.add_image(data, **kwargs)
        self.data = self.layer.data
        if self.show_tissue and getattr(start, "tissue", None) is not None:
            mask, options, _ = tissue_layer(start.tissue, base_scale)
            options["translate"] = tuple(
                (np.asarray(options["translate"]) + base_translate).tolist()
            )
            options["name"] = f"tissue · {self.image_layer.name}"
            options.update(units)
            if options["name"] in self.viewer.layers:
                self.viewer.layers.remove(options["name"])
            self.tissue = self.viewer.add_labels(mask, **options)

    def show(self, result: Any) -> None:
        """Show a finished ``SlideResult`` (a cache hit streams nothing: draw it whole)."""
        if self.layer is None:
            from napari_pathreview.inference.slides import SlideStart

            self._start(SlideStart(result.grid, result.classes, result.model_ref, 0))
        self.data[...] = result.prob_maps[self.class_index]
        self.layer.refresh()
        self.complete = True

    def discard(self) -> None:
        """Take an unfinished map off the viewer (a cancelled or failed run).

        Its unclassified cells are drawn transparent like low-probability ones, so a partial
        map would read as a finished one with little tumour in it. A newer run's map that
        replaced this one (same name) is left alone.
        """
        if self.complete:
            return
        for layer in (self.layer, self.tissue):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layer = self.tissue = self.data = None
