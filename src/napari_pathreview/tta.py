"""Test-time augmentation: dihedral views, their exact inverses, and probability merging.

Every view is ``rot90(k) ∘ (optional horizontal flip)`` on the last two dimensions, so it is a
pure index permutation and its inverse is exact. Views of a batch are stacked view-major
(all N images under view 0, then all under view 1, ...) so one forward pass covers them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_pathreview.errors import InvalidInputError

TTA_MODES: tuple[str, ...] = ("none", "flips", "d4")
MERGE_METHODS: tuple[str, ...] = ("mean", "gmean", "max")


@dataclass(frozen=True)
class View:
    """One dihedral view: optional flip of the last axis (width), then ``k`` quarter turns."""

    name: str
    k: int = 0
    flip: bool = False

    def apply(self, t: Any) -> Any:
        """The augmented tensor (acts on the last two dims)."""
        if self.flip:
            t = t.flip(-1)
        return t.rot90(self.k, dims=(-2, -1)) if self.k % 4 else t

    def invert(self, t: Any) -> Any:
        """Undo :meth:`apply`: ``invert(apply(t))`` equals ``t`` exactly."""
        if self.k % 4:
            t = t.rot90(-self.k, dims=(-2, -1))
        return t.flip(-1) if self.flip else t

    @property
    def swaps_axes(self) -> bool:
        """Whether the view turns an H×W tensor into W×H."""
        return self.k % 2 == 1


_VIEWS: dict[str, tuple[View, ...]] = {
    "none": (View("identity"),),
    "flips": (View("identity"), View("hflip", 0, True), View("vflip", 2, True), View("hvflip", 2)),
    "d4": (
        View("identity"),
        View("rot90", 1),
        View("rot180", 2),
        View("rot270", 3),
        View("hflip", 0, True),
        View("transpose", 1, True),
        View("vflip", 2, True),
        View("antitranspose", 3, True),
    ),
}


def get_views(mode: str) -> list[View]:
    """The views of a TTA mode (identity first).

    Raises:
        InvalidInputError: for an unknown mode.
    """
    if mode not in _VIEWS:
        raise InvalidInputError(f"unknown TTA mode {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return list(_VIEWS[mode])


def num_views(mode: str) -> int:
    """How many views a mode makes (1, 4 or 8)."""
    return len(get_views(mode))


def check_input_shape(mode: str, height: int, width: int) -> None:
    """Refuse a mode whose quarter turns would change a non-square H×W input.

    Raises:
        InvalidInputError: for d4 on a non-square input (the message offers 'flips').
    """
    if height != width and any(v.swaps_axes for v in get_views(mode)):
        raise InvalidInputError(
            f"TTA mode {mode!r} rotates by 90°, which needs square inputs; "
            f"got {(height, width)}: use TTA 'flips' or 'none', or square inputs"
        )


def augment_batch(x: Any, mode: str) -> Any:
    """All views of a batch stacked view-major: N×C×H×W → (V·N)×C×H×W.

    Raises:
        InvalidInputError: for anything but a 4-D batch (the views of one C×H×W image would be
            stacked along its channels), or if a view would change H×W (quarter turns of a
            non-square batch).
    """
    import torch

    views = get_views(mode)
    if x.ndim != 4:
        raise InvalidInputError(
            f"augment_batch expects a batch N×C×H×W, got shape {tuple(x.shape)}; "
            "make one C×H×W image a batch of one with x.unsqueeze(0)"
        )
    check_input_shape(mode, x.shape[-2], x.shape[-1])
    if len(views) == 1:
        return x
    return torch.cat([v.apply(x) for v in views], dim=0)


def _split(t: Any, mode: str) -> tuple[list[View], Any]:
    views = get_views(mode)
    if t.shape[0] % len(views):
        raise InvalidInputError(
            f"leading size {t.shape[0]} is not a multiple of the {len(views)} views of {mode!r}"
        )
    return views, t.reshape(len(views), t.shape[0] // len(views), *t.shape[1:])


def deaugment_maps(maps: Any, mode: str) -> Any:
    """Invert each view of spatial outputs: (V·N)×…×H×W → V×N×…×H×W in the input's frame."""
    import torch

    views, grouped = _split(maps, mode)
    return torch.stack([v.invert(grouped[i]) for i, v in enumerate(views)], dim=0)


def merge_probabilities(p: Any, mode: str, how: str = "mean") -> Any:
    """Merge per-view probabilities (V·N)×K → N×K.

    ``mean`` averages probabilities (seed 001/000 practice); ``gmean`` and ``max`` are
    renormalised to sum to 1 when the inputs do (softmax outputs), and left as is otherwise
    (independent sigmoid outputs).
    """
    import torch

    if how not in MERGE_METHODS:
        raise InvalidInputError(f"unknown merge {how!r}; choose one of {', '.join(MERGE_METHODS)}")
    _, grouped = _split(p, mode)
    if how == "mean":
        return grouped.mean(0)
    gmean = how == "gmean"
    merged = grouped.clamp_min(1e-12).log().mean(0).exp() if gmean else grouped.amax(0)
    sums = grouped.sum(-1)
    if grouped.shape[-1] > 1 and torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        merged = merged / merged.sum(-1, keepdim=True)
    return merged
