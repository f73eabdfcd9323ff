"""The part each axis of a TIFF series plays: rows, columns, a pixel's samples, or frames.

tifffile names a series' axes from the file's metadata (OME ``DimensionOrder`` with
``SamplesPerPixel``, ImageJ hyperstacks, its own shaped description) or from its pages: ``Y``
and ``X`` are the plane, ``S`` the samples of a pixel (grey, grey + alpha, RGB, RGBA), ``C``
channels, and ``Z``, ``T``, ``I``, ``Q`` (and rarer letters) more planes. One rule reads them
for the eager reader, the lazy stacks and the slide reader, so no layout decodes one way
small and another large:

- ``C`` of exactly 3 planes in a file without ``S`` is the R, G and B planes of one colour
  image (a planar OME-TIFF): samples.
- Every other axis, ``C`` included (with ``S`` each channel is a colour image itself, as in
  an OME-TIFF written from a (3, H, W, 3) array; without, grey channels), numbers frames:
  every plane is kept, in file order, never only the first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_pathreview.errors import ImageReadError

PLANE = "YX"
COLOUR_PLANES = 3
"""``C`` of this many planes, in a file without ``S``, is one RGB image stored plane by plane."""
MAX_SAMPLES = 4
"""The most samples a pixel may have: RGBA."""


def axis_roles(axes: str, shape: Sequence[int]) -> str:
    """One letter per axis of ``axes``: ``Y``, ``X``, ``S`` (samples) or ``F`` (frames)."""
    samples = "S" in axes
    roles = []
    for axis, size in zip(axes, shape, strict=True):
        if axis in "YXS":
            roles.append(axis)
        elif axis == "C" and not samples and size == COLOUR_PLANES:
            roles.append("S")
        else:
            roles.append("F")
    return "".join(roles)


def frame_total(axes: str, shape: Sequence[int]) -> int:
    """How many frames the frame axes of a series number together (1: a single image)."""
    roles = axis_roles(axes, shape)
    return int(math.prod(n for n, role in zip(shape, roles, strict=True) if role == "F"))


def pixel_shape(axes: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of one frame: Y×X, or Y×X×S."""
    roles = axis_roles(axes, shape)
    return tuple(shape[roles.index(role)] for role in "YXS" if role in roles)


def yxs_layout(axes: str, shape: Sequence[int], frames: bool) -> tuple[list[Any], list[int]]:
    """The index and the transpose that bring an array of ``axes`` to Y×X(×S): with
    ``frames`` the frame axes are kept first (file order), else each at its first plane."""
    roles = axis_roles(axes, shape)
    index: list[Any] = []
    kept: list[str] = []
    for role in roles:
        keep = role != "F" or frames
        index.append(slice(None) if keep else 0)
        kept.extend(role if keep else "")
    stacked = [i for i, role in enumerate(kept) if role == "F"]
    return index, stacked + [kept.index(role) for role in "YXS" if role in kept]


def check_axes(path: Path, axes: str, shape: Sequence[int]) -> None:
    """Refuse a layout no reader can show, naming the file and its axes.

    Raises:
        ImageReadError: No Y or X axis, an axis twice, or more than 4 samples a pixel.
    """
    described = f"axes {axes} (shape {tuple(int(n) for n in shape)})"
    if len(axes) != len(shape) or len(set(axes)) != len(axes) or not set(PLANE) <= set(axes):
        raise ImageReadError(
            f"{path}: a TIFF of {described} is not a series of Y×X images; "
            "save it with axes ending in YX (or YXS for colour)"
        )
    roles = axis_roles(axes, shape)
    samples = shape[roles.index("S")] if "S" in roles else 1
    if samples > MAX_SAMPLES:
        raise ImageReadError(
            f"{path}: a TIFF of {described} has {samples} samples a pixel; grey, grey + "
            f"alpha, RGB or RGBA (1 to {MAX_SAMPLES}) are read: save other channels as "
            "separate planes (a C axis)"
        )
