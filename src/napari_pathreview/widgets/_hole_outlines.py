"""The holes of ROI polygons drawn in napari, whose Shapes cannot draw a polygon with a hole.

A Shapes layer carrying holes (``io.shape_holes``) gets a companion layer, ``"<ROI> holes"``,
just above it: each hole outlined in :data:`HOLE_EDGE_COLOUR`, unfilled, at its region's edge
width, with the ROI layer's transform, visibility and opacity. It is a display: it follows
the ROI layer (a region dragged as a whole takes its holes along; a region reshaped away from
a hole loses it, with the warning ``settle_layer_holes`` gives), an edit made on it is undone,
the pickers do not offer it, and the writer refuses to save it. Deleting it hides the holes
of that ROI layer; deleting the ROI layer deletes it.

:func:`show_holes` starts this for a viewer: the plugin's reader calls it for the viewer a
file with holes is opened into, and the docks that add ROI layers call it for theirs.
"""

from __future__ import annotations

import logging
import weakref
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


def show_holes(viewer: Any) -> None:
    """Draw the holes of every Shapes layer of ``viewer`` that carries some, now and as layers
    are added (calling it again changes nothing)."""
    layers = getattr(viewer, "__wrapped__", viewer).layers
    layers.events.inserted.connect(_inserted)  # napari connects a function once
    layers.events.removed.connect(_removed)
    for layer in list(layers):
        _link(layers, layer)


def show_holes_in_current_viewer() -> None:
    """:func:`show_holes` for the viewer napari is opening files into (none: nothing)."""
    try:
        from napari import current_viewer
    except ImportError:
        return
    viewer = current_viewer()
    if viewer is not None:
        show_holes(viewer)


def is_hole_outlines(layer: Any) -> bool:
    """Whether ``layer`` is the display of another layer's holes."""
    facts = (getattr(layer, "metadata", None) or {}).get("pathreview") or {}
    return isinstance(facts, dict) and facts.get("kind") == HOLES_KIND


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

    if isinstance(layer, Shapes) and not is_hole_outlines(layer) and layer not in _LINKS:
        _LINKS[layer] = _Link(layers, layer)


class _Link:
    """One ROI layer and the layer outlining its holes (made when it first has a hole)."""

    def __init__(self, layers: Any, roi: Any) -> None:
        self.layers = layers
        self.roi = weakref.ref(roi)
        self.outlines: Any = None
        self.dismissed = False
        self._drawing = False
        self._connected = [(roi.events.data, self._data_changed), (roi.events.metadata, self.draw)]
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
        """Outline the holes as the ROI layer places them now."""
        roi = self.roi()
        if roi is None or self.dismissed:
            return
        facts = (roi.metadata or {}).get("pathreview") or {}
        if self.outlines is None and not facts.get(HOLES_KEY):
            return
        data = list(roi.data)
        settled = settle_holes(data, list(roi.shape_type), roi.features, roi.metadata)
        rings, owners = hole_outlines(data, settled.holes)
        if self.outlines is None:
            if not rings:
                return
            self._make_outlines(roi)
        widths = [float(np.asarray(roi.edge_width)[i]) for i in owners]
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
        active = self.layers.selection.active
        self.layers.insert(self.layers.index(roi) + 1, self.outlines)
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
            self.draw()

    def unlink(self) -> None:
        """The ROI layer left the viewer: its holes' display goes too."""
        for emitter, callback in self._connected:
            emitter.disconnect(callback)
        self._connected = []
        outlines, self.outlines = self.outlines, None
        if outlines is not None and outlines in self.layers:
            self.layers.remove(outlines)
