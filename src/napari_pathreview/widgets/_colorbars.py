"""Colour bars of the maps the plugin adds (CAMs, tile probabilities): one bar, the map in view.

napari draws every layer's bar in the same corner without a title, so several bars cannot be
told apart. :class:`ColourBarFollower` keeps :func:`sync_colorbars` true while a dock that
shows maps is open; the dock detaches it when it is closed, so opening and closing the
Analyze dock does not leave one more set of viewer callbacks behind each time.
"""

from __future__ import annotations

from typing import Any

from napari_pathreview.widgets._layer_meta import plugin_meta

#: Result layers that are read through a colour bar (``metadata["pathreview"]["kind"]``).
COLORBAR_KINDS = ("cam", "tile_probability")


def _map_layers(viewer: Any) -> list[Any]:
    return [layer for layer in viewer.layers if plugin_meta(layer).get("kind") in COLORBAR_KINDS]


def colorbar_layer(viewer: Any) -> Any:
    """The one map whose colour bar is shown, or None when no map is visible.

    The bar belongs to the selected map, else to the selected image's map, else to the
    topmost visible map (the one seen on top).
    """
    shown = [layer for layer in _map_layers(viewer) if layer.visible]
    if not shown:
        return None
    active = getattr(viewer.layers.selection.active, "name", None)  # proxies: by name
    selected = [layer for layer in shown if layer.name == active]
    owned = [layer for layer in shown if plugin_meta(layer).get("image") == active]
    return (selected or owned or shown)[-1]


def sync_colorbars(viewer: Any) -> None:
    """Show the colour bar of :func:`colorbar_layer` only; hide every other map's bar."""
    chosen = colorbar_layer(viewer)
    name = None if chosen is None else chosen.name
    for layer in _map_layers(viewer):
        layer.colorbar.visible = layer.name == name


class ColourBarFollower:
    """Keeps :func:`sync_colorbars` true as layers are selected, added, removed or hidden,
    until :meth:`detach`.

    Args:
        viewer: the viewer (or napari's proxy of it) whose maps' bars are kept in order.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._layers: list[Any] = []  # those whose ``visible`` event is connected here
        self.attached = False
        self.attach()

    def attach(self) -> None:
        """Follow (again, when a closed panel is docked anew)."""
        if self.attached:
            return
        self._layers = list(self.viewer.layers)
        for layer in self._layers:
            layer.events.visible.connect(self.sync)
        self.viewer.layers.events.inserted.connect(self._inserted)
        self.viewer.layers.events.removed.connect(self._removed)
        self.viewer.layers.events.reordered.connect(self.sync)
        self.viewer.layers.selection.events.active.connect(self.sync)
        self.attached = True
        self.sync()

    def sync(self, *_: Any) -> None:
        sync_colorbars(self.viewer)

    def _inserted(self, event: Any) -> None:
        event.value.events.visible.connect(self.sync)
        self._layers.append(event.value)
        self.sync()

    def _removed(self, event: Any) -> None:
        event.value.events.visible.disconnect(self.sync)
        self._layers = [layer for layer in self._layers if layer != event.value]  # proxies too
        self.sync()

    def detach(self) -> None:
        """Stop following (the dock was closed): every callback connected here is removed."""
        if not self.attached:
            return
        for layer in self._layers:
            layer.events.visible.disconnect(self.sync)
        self._layers = []
        self.viewer.layers.events.inserted.disconnect(self._inserted)
        self.viewer.layers.events.removed.disconnect(self._removed)
        self.viewer.layers.events.reordered.disconnect(self.sync)
        self.viewer.layers.selection.events.active.disconnect(self.sync)
        self.attached = False


def follow_while_docked(panel: Any, follower: ColourBarFollower) -> None:
    """Detach ``follower`` when ``panel`` leaves its dock (napari's × unparents the panel and
    deletes the dock), attach it again if the panel is docked anew."""
    from qtpy.QtCore import QEvent, QObject

    class _DockWatch(QObject):
        def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.ParentChange:
                if watched.parentWidget() is None:
                    follower.detach()
                else:
                    follower.attach()
            return False

    panel.installEventFilter(_DockWatch(panel))
