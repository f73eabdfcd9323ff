"""A whole slide as one MIL bag: a lesion-aware (``patch_mil``) model pools all its patches.

Tiling a slide into model-input-sized tiles and averaging their probabilities would treat each
tile as an image of its own. A patch MIL model was trained to decide from *all* patches of an
image, so on a slide the engine reads tiles of the model's patch size at its µm/px, keeps each
tile's embedding (a forward hook on ``PatchMIL.patch_grid``, merged over TTA views like the
probabilities), and after the last tile runs the MIL head once over every tissue patch: the
slide's probabilities, and an attention weight per tile beside its patch probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_pathreview.inference.mil_maps import patch_mil_of


def tile_size_of(predictor: Any) -> tuple[int, int]:
    """Slide tiles a model reads: one patch for a patch MIL model, else its whole input."""
    model = patch_mil_of(predictor)
    if model is not None:
        return (model.patch_size, model.patch_size)
    return tuple(int(v) for v in predictor.spec.hw)


@dataclass(frozen=True)
class SlideBag:
    """The MIL head's decision over all tissue tiles of a slide.

    Attributes:
        probabilities: float32 (C,) slide-level class probabilities.
        attention: float32 (T,) pooling weight of each tile, in the order of the result's
            ``tile_rows`` / ``tile_cols`` (sums to 1).
    """

    probabilities: np.ndarray
    attention: np.ndarray


class EmbeddingTap:
    """Collects the per-tile embeddings of every forward while a slide runs."""

    def __init__(self, model: Any, tta: str) -> None:
        self.model, self.tta = model, tta
        self.batches: list[Any] = []
        self._handle = None

    def __enter__(self) -> EmbeddingTap:
        self._handle = self.model.patch_grid.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()

    def _keep(self, _module: Any, _inputs: Any, output: Any) -> None:
        from napari_pathreview import tta as tta_mod

        # (V·B, D, 1, 1) for patch-sized tiles → (B, D), views averaged as probabilities are
        flat = output.detach().float().flatten(2).mean(-1)
        self.batches.append(tta_mod.merge_probabilities(flat, self.tta).cpu().numpy())

    def embeddings(self) -> np.ndarray:
        """(T, D) embeddings of every tile classified so far, in classification order."""
        if not self.batches:
            return np.zeros((0, self.model.head.dim), np.float32)
        return np.concatenate(self.batches).astype(np.float32)


def pool_slide(model: Any, embeddings: np.ndarray) -> SlideBag | None:
    """Run the model's MIL head once over all tile embeddings (None for an empty slide)."""
    import torch

    if len(embeddings) == 0:
        return None
    head = model.head.eval()
    with torch.inference_mode():
        bag = torch.as_tensor(embeddings, dtype=torch.float32).unsqueeze(0)
        out = head(bag.to(next(head.parameters()).device))
        probabilities = torch.softmax(out.logits.float(), dim=1)[0].cpu().numpy()
        attention = out.attention.float()[0].cpu().numpy()
    return SlideBag(probabilities.astype(np.float32), attention.astype(np.float32))


def slide_map(result: Any, kind: str, negative_class: int) -> np.ndarray:
    """A patch MIL run's map over the slide grid (rows × cols, in [0, 1]; 0 off tissue).

    ``patch_map``: each tile's lesion probability, 1 − P(negative class); ``attention_map``:
    each tile's weight in the slide decision, scaled to its maximum. One array pixel is one
    grid cell, so the map lies on the slide with ``scale = level-0 height / rows``.

    Raises:
        InvalidInputError: the run was not a patch MIL model's (it has no such map).
    """
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.inference.mil_maps import MAP_KINDS

    if kind not in MAP_KINDS:
        raise InvalidInputError(f"map {kind!r} is not one of {', '.join(MAP_KINDS)}")
    if result.bag is None:
        raise InvalidInputError(
            f"{result.model_ref} is not a patch MIL model: it has CAMs but no {kind}"
        )
    if kind == "patch_map":
        values = 1.0 - result.tile_probabilities[:, negative_class]
    else:
        values = result.bag.attention / max(float(result.bag.attention.max()), 1e-12)
    grid = np.zeros(result.grid.shape, np.float32)
    grid[result.tile_rows, result.tile_cols] = np.clip(values, 0.0, 1.0)
    return grid
