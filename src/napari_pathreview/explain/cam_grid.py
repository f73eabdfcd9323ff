"""How coarse a model's CAM is at an input size: the one rule training and inference share.

A CAM is a weighted sum of the target layer's channels, upsampled to the input. Its
resolution is that layer's spatial size: resnet18 (stride 32) at 32 px has a 1×1 map, and
every Grad-CAM / Grad-CAM++ / EigenCAM of it is a constant image that ``cam_is_empty`` flags
only after the work is done. The grid is read from one forward with a hook on the target
layers, on whatever device the model lives: on PyTorch's meta device (as
``training.build.require_buildable`` builds a recipe's model) that costs no memory and no
arithmetic.

The rule: a CAM can localise only when its grid has at least :data:`MIN_CAM_CELLS` cells
along each side. One cell along a side means the map is constant along that axis, so the
binarised CAM is a band or the whole image; 2×2 is the coarsest grid whose map can single out
a region (a quadrant) and so the coarsest whose IoU against an ROI carries any evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from napari_pathreview.errors import InvalidInputError

__all__ = [
    "MIN_CAM_CELLS",
    "CamResolutionError",
    "cam_grid",
    "cam_grid_note",
    "cam_layers",
    "can_localise",
    "smallest_localising_size",
]

#: Cells a CAM grid needs along each side before its map can localise anything.
MIN_CAM_CELLS = 2


class CamResolutionError(InvalidInputError):
    """The model's CAM layer is too coarse at this input size for a CAM to localise."""


def cam_layers(
    model: nn.Module,
    target_layers: Sequence[nn.Module] | None = None,
    reshape_transform: Callable | None = None,
) -> tuple[list[nn.Module], Callable | None]:
    """The layers to hook and the reshape transform: explicit ones, else the model's own.

    Raises:
        InvalidInputError: the model does not say where to hook (no ``cam_target_layers``)
            and no layers were given: we do not guess.
    """
    if target_layers is not None:
        layers = list(target_layers)
    elif hasattr(model, "cam_target_layers"):
        layers = list(model.cam_target_layers())
        if reshape_transform is None:
            reshape_transform = getattr(model, "cam_reshape_transform", None)
    else:
        raise InvalidInputError(
            f"{type(model).__name__} has no cam_target_layers(); pass target_layers explicitly"
        )
    if not layers:
        raise InvalidInputError("no CAM target layers: the model lists none")
    return layers, reshape_transform


def _square(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def cam_grid(
    model: nn.Module, size: int | Sequence[int], channels: int | None = None
) -> tuple[int, int]:
    """(height, width) of the CAM's grid for a ``size`` input (an int is square).

    The finest of the target layers' maps (after the model's reshape transform, so a ViT's
    tokens count as their patch grid): pytorch-grad-cam averages the layers' upsampled maps,
    so the finest one sets what the CAM can resolve. The model's train/eval mode is restored.

    Args:
        model: A model with ``cam_target_layers()``; on the meta device, the CPU or a GPU.
        size: Input height and width in pixels.
        channels: Input channels; default the model's ``spec.input_size[0]``, else 3.
    """
    layers, reshape = cam_layers(model)
    spec = getattr(model, "spec", None)
    channels = channels or (spec.input_size[0] if spec is not None else 3)
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    grids: list[tuple[int, int]] = []

    def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        out = reshape(output) if reshape is not None else output
        grids.append((int(out.shape[-2]), int(out.shape[-1])))

    handles = [layer.register_forward_hook(record) for layer in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, *_square(size), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return max(grids, key=lambda grid: grid[0] * grid[1])


def can_localise(grid: Sequence[int]) -> bool:
    """Whether a CAM grid has :data:`MIN_CAM_CELLS` cells along each side (see module doc)."""
    return min(grid) >= MIN_CAM_CELLS


def smallest_localising_size(model: nn.Module, start: int, limit: int) -> int | None:
    """The smallest square input in (``start``, ``limit``] whose CAM grid can localise.

    Doubling then bisection, so a dozen forwards (meant for a meta-device model). A size the
    model cannot take (it raises) counts as too small. None when even ``limit`` is too small.
    """

    def enough(size: int) -> bool:
        try:
            return can_localise(cam_grid(model, size))
        except (RuntimeError, ValueError, AssertionError):
            return False

    low, high = start, min(max(2 * start, start + 1), limit)
    while not enough(high):
        if high >= limit:
            return None
        low, high = high, min(2 * high, limit)
    while high - low > 1:  # enough(high), not enough(low)
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def cam_grid_note(grid: Sequence[int], size: int | Sequence[int]) -> str:
    """What a too-coarse grid means for the user: why its CAMs are flat and what to use."""
    height, width = _square(size)
    pixels = f"{height} px" if height == width else f"{height}×{width} px"
    return (
        f"this model's CAM layer is {grid[0]}×{grid[1]} at {pixels}: CAMs cannot localise "
        f"(they need at least {MIN_CAM_CELLS}×{MIN_CAM_CELLS}); use patch maps (a patch MIL "
        "model's patch_map) or a model with a larger input"
    )
