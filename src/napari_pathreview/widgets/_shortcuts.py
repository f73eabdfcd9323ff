"""Viewer key bindings that act on a dock panel only while the user can see it.

napari keeps a binding until something replaces it, and closing a dock with × only unparents
its panel. A binding to the panel's methods therefore kept a closed Review panel alive and went
on acting on it (Alt+S saved the form nobody could see), and took the keys from a Review panel
still open. Here each binding holds its panel weakly and, while the panel is closed, hidden or
gone, hands the key to the binding it replaced: another open panel, or the user's own.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from qtpy.QtWidgets import QDockWidget, QWidget


def shown_in_a_dock(panel: QWidget) -> bool:
    """Whether ``panel`` sits in a dock that is not hidden (closed docks let their panel go)."""
    parent = panel.parentWidget()
    while parent is not None:
        if isinstance(parent, QDockWidget):
            return not parent.isHidden()
        parent = parent.parentWidget()
    return False


def _press(
    panel: weakref.ref[QWidget], action: Callable[[Any], Any], previous: Any
) -> Callable[[Any], Any]:
    def press(viewer: Any) -> Any:
        target = panel()
        if target is not None and shown_in_a_dock(target):
            return action(target)
        if callable(previous):  # napari's "..." blocker is not
            return previous(viewer)
        return None

    return press


def bind_panel_keys(
    viewer: Any, panel: QWidget, actions: Mapping[str, Callable[[Any], Any]]
) -> None:
    """Bind each key to ``action(panel)`` while ``panel`` is shown in a dock.

    Args:
        viewer: the viewer (or napari's proxy of it) whose keymap gets the keys.
        panel: the dock panel the keys act on; held weakly, so closing its dock frees it.
        actions: key (napari's spelling, "Alt-S") → function of the panel.
    """
    ref = weakref.ref(panel)
    for key, action in actions.items():
        previous = viewer.bind_key(key, None)  # unbinds, returning what was bound
        viewer.bind_key(key, _press(ref, action, previous))
