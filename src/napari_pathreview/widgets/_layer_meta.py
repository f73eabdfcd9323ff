"""The plugin's own facts on a napari layer: ``layer.metadata["pathreview"]``.

Readers, docks and sessions all keep what they know of a layer (modality, µm/px, source
file, prediction, the image a CAM or ROI belongs to) under one key; this is the one way to
read it.
"""

from __future__ import annotations

from typing import Any

PLUGIN_KEY = "pathreview"


def plugin_meta(layer: Any) -> dict[str, Any]:
    """A copy of ``layer``'s plugin metadata ({} when it has none, or for None)."""
    return dict((getattr(layer, "metadata", {}) or {}).get(PLUGIN_KEY) or {})
