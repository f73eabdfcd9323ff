"""The holes of ROI polygons drawn in napari, whose Shapes cannot draw a polygon with a hole.

A Shapes layer carrying holes (``io.shape_holes``) gets a companion layer, ``"<ROI> holes"``,
just below it: each hole outlined in :data:`HOLE_EDGE_COLOUR`, unfilled, at its region's edge
width, with the ROI layer's transform, visibility and opacity. Below, so that the ROI layer,
the one being edited, is the active layer once both are added. It is a display linked to the
ROI layer itself, not to a viewer: a region moved, resized or rotated as a whole takes its
holes along (live, while it is dragged), a region deleted takes its holes' outlines with it,
a region reshaped away from a hole loses it (the warning ``settle_layer_holes`` gives); an
edit made on the display is undone, the pickers do not offer it, the writer refuses to save it.

Two ways in. The plugin's reader builds a holed ROI layer and its display itself
(:func:`layers_with_hole_outlines`; napari adds the layers a reader returns to the viewer that
opened the file, so the reader never asks which viewer that is). And :func:`show_holes`, called
by the docks for their viewer, gives a display to a holed ROI layer added there by code, and
lets the links of that viewer follow its layer list: deleting the display hides those holes,
deleting the ROI layer deletes its display. napari tells a layer nothing when it leaves a
viewer, so without a dock in that viewer the display of a deleted ROI layer stays until
deleted too.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_pathreview.io.shape_holes import (
    HOLES_KEY,
    HOLES_KIND,
    hole_outlines,
    settle_holes,
)

logger = logging.getLogger(__name__)

HOLE_EDGE_COLOUR = "magenta"
"""Hole outlines stand apart from region outlines (lime, or a MIAS severity colour): an
outline inside a region is a cut-out, not a second region."""
_FOLLOWED = ("scale", "translate", "rotate", "shear", "affine", "units", "visible", "opacity")
_AFTER = ("added", "removed", "changed")  # napari's data actions once a change is made


def layers_with_hole_outlines(items: Sequence[tuple[Any, ...]]) -> list[Any]:
    """napari layers of the LayerData ``items``; each Shapes layer carrying holes comes after
    the layer outlining them, the two linked (the reader returns these to napari)."""
    from napari.layers import Layer

    layers: list[Any] = []
    for item in items:
        layer = Layer.create(*item)
        if _carries_holes(layer):
            link = _LINKS[layer] = _Link(layer)
            if link.outlines is not None:
                layers.append(link.outlines)
        layers.append(layer)
    return layers


def show_holes(viewer: Any) -> None:
    """Draw the holes of every Shapes layer of ``viewer`` that carries some, now and as layers
    are added, and follow its layer list (calling it again changes nothing)."""
    layers = getattr(viewer, "__wrapped__", viewer).layers
    layers.events.inserted.connect(_inserted)  # napari connects a function once
    layers.events.removed.connect(_removed)
    for layer in list(layers):
        _link(layers, layer)


def is_hole_outlines(layer: Any) -> bool:
    """Whether ``layer`` is the display of another layer's holes."""
    facts = (getattr(layer, "metadata", None) or {}).get("pathreview") or {}
    return isinstance(facts, dict) and facts.get("kind") == HOLES_KIND


def _carries_holes(layer: Any) -> bool:
    from napari.layers import Shapes

    facts = (getattr(layer, "metadata", None) or {}).get("pathreview") or {}
    return isinstance(layer, Shapes) and isinstance(facts, dict) and bool(facts.get(HOLES_KEY))


_LINKS: weakref.WeakKeyDictionary[Any, _Link] = weakref.WeakKeyDictionary()
"""Each followed ROI layer's link; an entry goes with its layer."""


def _inserted(event: Any) -> None:
    _link(event.source, event.value)


def _removed(event: Any) -> None:
    layer = event.value
    link = _LINKS.pop(layer, None)
    if link is not None:
        link.unlink()
        return
    for link in list(_LINKS.values()):
        if link.outlines is layer:  # the user deleted the holes' display: leave it deleted
            link.outlines, link.dismissed = None, True


def _link(layers: Any, layer: Any) -> None:
    from napari.layers import Shapes

    if not isinstance(layer, Shapes) or is_hole_outlines(layer):
        return
    link = _LINKS.get(layer)
    if link is None:
        _LINKS[layer] = _Link(layer, layers)
    else:
        link.layers = layers  # linked by the reader: now its viewer's list is known too


class _Link:
    """One ROI layer and the layer outlining its holes (made when it first has a hole).

    Args:
        roi: The ROI layer.
        layers: The layer list of its viewer, where the display is inserted and removed;
            None for a layer the reader built (napari inserts both).
    """

    def __init__(self, roi: Any, layers: Any = None) -> None:
        self.layers = layers
        self.roi = weakref.ref(roi)
        self.outlines: Any = None
        self.dismissed = False
        self._drawing = False
        self._drawn: tuple[list[np.ndarray], list[float]] = ([], [])
        self._connected = [
            (roi.events.data, self._data_changed),
            (roi.events.metadata, self.draw),
            (roi.events.set_data, self.draw),  # every refresh: each step of a drag
        ]
        for name in ("name", *_FOLLOWED):
            if hasattr(roi.events, name):
                self._connected.append((getattr(roi.events, name), self._follow))
        for emitter, callback in self._connected:
            emitter.connect(callback)
        self.draw()

    def _data_changed(self, event: Any) -> None:
        """After an edit: place the holes for good (moved along, or dropped with a warning)."""
        roi = self.roi()
        if roi is None or str(getattr(event, "action", "changed")) not in _AFTER:
            return
        from napari_pathreview.widgets._scale import settle_layer_holes

        settle_layer_holes(roi, list(roi.data))
        self.draw()

    def draw(self, *_: Any) -> None:
        """Outline the holes as the ROI layer places them now (nothing when that is as drawn)."""
        roi = self.roi()
        if roi is None or self.dismissed:
            return
        facts = (roi.metadata or {}).get("pathreview") or {}
        if self.outlines is None and not facts.get(HOLES_KEY):
            return
        data = list(roi.data)
        settled = settle_holes(data, list(roi.shape_type), roi.features, roi.metadata)
        rings, owners = hole_outlines(data, settled.holes)
        widths = [float(np.asarray(roi.edge_width)[i]) for i in owners]
        if self.outlines is None:
            if not rings:
                return
            self._make_outlines(roi)
        elif _same(self._drawn, (rings, widths)):
            return
        self._drawing = True
        try:
            self.outlines.data = []
            if rings:
                self.outlines.add_polygons(
                    rings,
                    edge_width=widths,
                    edge_color=HOLE_EDGE_COLOUR,
                    face_color="transparent",
                )
        finally:
            self._drawing = False
        self._drawn = (rings, widths)

    def _make_outlines(self, roi: Any) -> None:
        from napari.layers import Shapes

        self.outlines = Shapes(
            ndim=roi.ndim,
            name=f"{roi.name} holes",
            face_color="transparent",
            edge_color=HOLE_EDGE_COLOUR,
            metadata={"pathreview": {"kind": HOLES_KIND, "holes_of": roi.name}},
        )
        self._follow()
        self.outlines.events.data.connect(self._undo_edit)
        if self.layers is not None and roi in self.layers:
            active = self.layers.selection.active
            self.layers.insert(self.layers.index(roi), self.outlines)
            self.layers.selection.active = active  # the ROI stays the layer being edited

    def _follow(self, *_: Any) -> None:
        roi = self.roi()
        if roi is None or self.outlines is None:
            return
        for name in _FOLLOWED:
            if hasattr(roi, name) and hasattr(self.outlines, name):
                setattr(self.outlines, name, getattr(roi, name))
        self.outlines.name = f"{roi.name} holes"
        self.outlines.metadata = {"pathreview": {"kind": HOLES_KIND, "holes_of": roi.name}}

    def _undo_edit(self, event: Any) -> None:
        """The holes are edited on the ROI layer's file, not here: redraw them as they are."""
        if not self._drawing and str(getattr(event, "action", "changed")) in _AFTER:
            self._drawn = ([], [])
            self.draw()

    def unlink(self) -> None:
        """The ROI layer left the viewer: its holes' display goes too."""
        for emitter, callback in self._connected:
            emitter.disconnect(callback)
        self._connected = []
        outlines, self.outlines = self.outlines, None
        if outlines is not None and self.layers is not None and outlines in self.layers:
            self.layers.remove(outlines)


def _same(
    drawn: tuple[list[np.ndarray], list[float]], now: tuple[list[np.ndarray], list[float]]
) -> bool:
    """Whether the outlines ``now`` are those ``drawn`` (a refresh that moved no hole)."""
    (rings, widths), (new_rings, new_widths) = drawn, now
    return (
        widths == new_widths
        and len(rings) == len(new_rings)
        and all(np.array_equal(a, b) for a, b in zip(rings, new_rings, strict=True))
    )
