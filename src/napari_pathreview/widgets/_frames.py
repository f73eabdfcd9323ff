"""The Analyze dock and a stack of frames (tomosynthesis, a multi-frame film TIFF, a colour
z-stack).

The models are 2-D and a stack opens as one 3-D layer, so the dock refuses it rather than
classifying a frame the user did not pick; the message names the frame on screen and the two
ways to classify it (``pathreview predict --frame K``, or napari's Split Stack).
"""

from __future__ import annotations

from typing import Any

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.widgets._layer_meta import plugin_meta


def frame_on_screen(viewer: Any, layer: Any) -> int:
    """The frame of ``layer``'s first axis the viewer's slider shows now."""
    position = layer.world_to_data(viewer.dims.point)
    frames = int(layer.level_shapes[0][0]) if hasattr(layer, "level_shapes") else 1
    return min(max(int(round(float(position[0]))), 0), max(frames - 1, 0))


def refuse_stack(viewer: Any, layer: Any, model: str | None = None) -> None:
    """Refuse an image layer that holds a stack of frames, saying how to pick one (with
    ``model``, the chosen model, in the command it suggests).

    Raises:
        InvalidInputError: ``layer`` is frames×H×W, or frames×H×W×3 RGB.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if len(data.shape) != 3 + bool(getattr(layer, "rgb", False)):
        return
    frames = int(data.shape[0])
    shown = frame_on_screen(viewer, layer)
    source = plugin_meta(layer).get("source_path")
    ref = model or "NAME"
    command = (
        f"run `pathreview predict {source} --frame {shown} --model {ref}`, or " if source else ""
    )
    raise InvalidInputError(
        f"layer {layer.name!r} is a stack of {frames} frames (frame {shown} on screen), and the "
        "model classifies one 2-D image: it will not guess which frame. To classify the frame "
        f"on screen, {command}right-click the layer ▸ Split Stack (one layer per frame) and "
        "analyse that frame's layer."
    )
