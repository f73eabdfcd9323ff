"""The holes of ROI polygons drawn in napari, whose Shapes cannot draw a polygon with a hole.

A Shapes layer carrying holes (``io.shape_holes``) gets a companion layer, ``"<ROI> holes"``,
just below it: each hole outlined in :data:`HOLE_EDGE_COLOUR`, unfilled, at its region's edge
width, with the ROI layer's name, transform, visibility and opacity. Below, so that the ROI
layer, the one being edited, stays the active layer. It is a display linked to the ROI layer:
a region moved, resized or rotated as a whole takes its holes along (live, while it is
dragged), a region deleted takes its holes' outlines with it, a region reshaped away from a
hole loses it (the warning ``settle_layer_holes`` gives); an edit made on the display is
undone, the pickers do not offer it, the writer refuses to save it.

napari tells a layer nothing when it joins or leaves a viewer, so the display follows the
viewer's layer list (:func:`show_holes`, connected once per viewer): a holed ROI layer added
gets its display, a deleted one takes its display along, a display deleted alone stays
deleted (the ROI layer keeps its holes; re-adding the ROI layer draws them again). The docks
connect it for their viewer, and the reader for every open viewer
(:func:`follow_open_viewers`): napari builds the ROI layer from the reader's LayerData, with
what ``viewer.open(path, name=...)`` asks for, in whichever viewer opened the file.
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
    the layer outlining them, the two linked (the review queue builds these off the GUI
    thread, before they are added to its viewer)."""
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
    events = layers.events
    for emitter, callback in (
        (events.inserted, _inserted),  # napari connects a function once, after its own
        (events.removed, _removed),
        (events.begin_batch, _batch_began),
        (events.end_batch, _batch_ended),
    ):
        emitter.connect(callback)
    for layer in list(layers):
        _link(layers, layer)


def follow_open_viewers() -> None:
    """:func:`show_holes` for every open napari viewer: the reader cannot tell which one
    opened the file, and napari adds the holed ROI layer it builds from LayerData there."""
    from napari import Viewer

    viewers = getattr(Viewer, "_instances", None)  # napari's own registry (``close_all``)
    if viewers is None:
        logger.warning("napari lists no open viewers: ROI holes are outlined once a dock opens")
    for viewer in list(viewers or ()):
        show_holes(viewer)


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
_BATCHES: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
"""Layer lists amid a batch of removals (``remove_selected``, ``clear``), each with the displays
to remove when it ends: napari's loop would fail on a selected display removed under it."""


def _batch_began(event: Any) -> None:
    _BATCHES.setdefault(event.source, [])


def _batch_ended(event: Any) -> None:
    layers = event.source
    for outlines in _BATCHES.pop(layers, []):
        if outlines in layers:
            layers.remove(outlines)


def _inserted(event: Any) -> None:
    _link(event.source, event.value)


def _removed(event: Any) -> None:
    layers, layer = event.source, event.value
    link = _LINKS.pop(layer, None)
    if link is None:
        for other in list(_LINKS.values()):
            if other.outlines is layer:  # the user deleted the holes' display: leave it deleted
                other.unlink(dismissed=True)
        return
    outlines = link.unlink()  # the ROI layer left: its holes' display goes too
    if outlines is None or outlines not in layers:
        return
    if layers in _BATCHES:
        _BATCHES[layers].append(outlines)
    else:
        layers.remove(outlines)


def _link(layers: Any, layer: Any) -> None:
    from napari.layers import Shapes

    if not isinstance(layer, Shapes) or is_hole_outlines(layer):
        return
    link = _LINKS.get(layer)
    if link is None:
        _LINKS[layer] = _Link(layer, layers)
    else:
        link.layers = layers  # built linked, off the viewer: now its viewer's list is known


class _Link:
    """One ROI layer and the layer outlining its holes (made when it first has a hole).

    Args:
        roi: The ROI layer.
        layers: The layer list of its viewer, where the display is inserted; None for a
            layer built before it is added (``layers_with_hole_outlines``: both are added).
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

    def unlink(self, dismissed: bool = False) -> Any:
        """Let go of the holes' display and return it (None if there is none): the ROI layer
        left the viewer, or, ``dismissed``, the display did and the ROI layer draws no more."""
        if self.outlines is not None:
            self.outlines.events.data.disconnect(self._undo_edit)
        outlines, self.outlines = self.outlines, None
        if dismissed:
            self.dismissed = True
            return outlines
        for emitter, callback in self._connected:
            emitter.disconnect(callback)
        self._connected = []
        return outlines


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
