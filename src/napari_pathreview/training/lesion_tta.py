"""Test-time augmentation of a lesion run's held-out scoring (``eval.tta``).

A fold's embedding store holds each film's patch grid as the film stands: the identity view.
The other views of the recipe's mode (``napari_pathreview.tta``: flips or the dihedral group,
which is what ``augment.hflip/vflip/rot90`` train the patches on) are encoded here, for the
films being scored only, and not stored. The image decision averages the views' probabilities
as the Predictor's TTA does; each view's maps are painted in its own frame, turned back with the
view's exact inverse and averaged, so they overlay the film like the identity view's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewPredictions:
    """One view's MIL-head outputs for the scored films, and each film's patch grid in it."""

    view: object  # napari_pathreview.tta.View
    probs: np.ndarray  # N×K
    patch_probs: tuple[np.ndarray, ...]  # per film, (gh·gw, K) in this view's grid order
    attention: tuple[np.ndarray, ...]
    grids: tuple[tuple[int, int], ...]


def view_pixels(pixels: np.ndarray, view) -> np.ndarray:
    """An H×W×C film under ``view`` (the same index permutation as on N×C×H×W tensors)."""
    import torch

    chw = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    return view.apply(chw).permute(1, 2, 0).contiguous().numpy()


def unview_map(painted: np.ndarray, view) -> np.ndarray:
    """A map painted in ``view``'s frame, turned back into the film's own frame."""
    import torch

    return view.invert(torch.from_numpy(np.ascontiguousarray(painted))).contiguous().numpy()


def predict_views(mode: str, model, images, cache, indices: Sequence[int]) -> list[ViewPredictions]:
    """The MIL head's outputs for ``images[indices]`` under every view of ``mode`` (identity
    first, read from the fold's store ``cache``; the others encoded now with the fold model)."""
    from napari_pathreview.training.embeddings import PatchEncoder, encode_image
    from napari_pathreview.training.mil import predict_bags
    from napari_pathreview.tta import get_views

    views = get_views(mode)
    encoder = PatchEncoder.of_patch_model("tta-view", model)
    out = []
    for view in views:
        if view.name == "identity":
            bags = [cache.bags[i] for i in indices]
            grids = [tuple(cache.grids[i]) for i in indices]
        else:
            encoded = [
                encode_image(
                    encoder, view_pixels(images[i].pixels, view), model.patch_size, model.stride
                )
                for i in indices
            ]
            bags = [emb for emb, _ in encoded]
            grids = [tuple(grid) for _, grid in encoded]
        predictions = predict_bags(model.head, bags)
        out.append(
            ViewPredictions(
                view,
                predictions.probs,
                predictions.patch_probs,
                predictions.attention,
                tuple(grids),
            )
        )
    return out


def merged_probs(views: Sequence[ViewPredictions]) -> np.ndarray:
    """N×K probabilities averaged over the views (``tta.merge_probabilities``' mean)."""
    return np.mean([v.probs for v in views], axis=0)


def merged_maps(
    views: Sequence[ViewPredictions],
    j: int,
    shape: tuple[int, int],
    patch: int,
    stride: int,
    negative: int,
) -> dict[str, np.ndarray]:
    """Film ``j``'s patch and attention maps (H×W, the film's frame) averaged over the views."""
    from napari_pathreview.training.mil import image_maps

    painted = []
    for v in views:
        in_view = shape[::-1] if v.view.swaps_axes else shape
        maps = image_maps(
            v.patch_probs[j], v.attention[j], v.grids[j], in_view, patch, stride, negative
        )
        painted.append({name: unview_map(m, v.view) for name, m in maps.items()})
    return {name: np.mean([p[name] for p in painted], axis=0) for name in painted[0]}
