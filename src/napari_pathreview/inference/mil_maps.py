"""A registered lesion-aware (``patch_mil``) model's own explanations of one image.

Beside the CAMs, a patch MIL model can say where it looked without any gradient: the
patch-probability map (per patch, the probability of any lesion class) and the attention map
(how much each patch weighed in the image decision). Both are painted back onto the image
through the Predictor's own geometry, so they overlay the image like a CAM and are scored
against ROIs with the same ``explain.metrics.roi_scores``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError

MAP_KINDS: tuple[str, ...] = ("patch_map", "attention_map")


@dataclass(frozen=True)
class MilExplanation:
    """Probabilities and both maps (H×W float32 in [0, 1] at the image's resolution)."""

    probs: np.ndarray
    label: str
    patch_map: np.ndarray
    attention_map: np.ndarray

    def map(self, kind: str) -> np.ndarray:
        if kind not in MAP_KINDS:
            raise InvalidInputError(f"map {kind!r} is not one of {', '.join(MAP_KINDS)}")
        return getattr(self, kind)


def patch_mil_of(predictor: Any) -> Any | None:
    """The predictor's ``PatchMIL`` model, or None for any other model."""
    from napari_pathreview.models.mil import PatchMIL

    model = getattr(predictor, "model", None)
    return model if isinstance(model, PatchMIL) else None


def negative_class_index(card: Any) -> int:
    """The class that means "no lesion": the recipe's lesion.negative_class, else the first."""
    recipe = getattr(card, "recipe", None) or {}
    name = (recipe.get("lesion") or {}).get("negative_class") or ""
    classes = list(card.classes)
    return classes.index(name) if name in classes else 0


def explain_mil(predictor: Any, image: Any) -> MilExplanation:
    """Patch-probability and attention maps of ``image`` (path, LoadedImage or array).

    Raises:
        InvalidInputError: the predictor's model is not a patch MIL model.
    """
    import torch

    from napari_pathreview.inference.preprocess import decode
    from napari_pathreview.models.mil import grid_to_image, lesion_probability

    model = patch_mil_of(predictor)
    if model is None:
        raise InvalidInputError(
            f"{predictor.model_ref} is not a patch MIL model: it has CAMs but no patch maps"
        )
    decoded = decode(image, min_side=min(predictor.spec.hw))
    spec = predictor.spec.uncropped()
    with torch.inference_mode():
        x = predictor.prepare([decoded.rgb], spec, [decoded.um_per_px])
        maps = model.explain(x.float().contiguous())
    shape = tuple(x.shape[-2:])
    grid = tuple(maps.attention.shape[-2:])
    patch_probs = maps.patch_probs[0].reshape(len(predictor.classes), -1).T.cpu().numpy()
    lesion = lesion_probability(patch_probs, negative_class_index(predictor.card))
    attention = maps.attention[0].reshape(-1).cpu().numpy()
    attention = attention / max(float(attention.max()), 1e-12)
    painted = {
        "patch_map": grid_to_image(lesion, grid, shape, model.patch_size, model.stride),
        "attention_map": grid_to_image(attention, grid, shape, model.patch_size, model.stride),
    }
    full = {
        k: np.clip(predictor.cam_to_image(v, decoded.rgb, spec, decoded.um_per_px), 0, 1)
        for k, v in painted.items()
    }
    probs = maps.probs[0].cpu().numpy()
    return MilExplanation(
        probs,
        predictor.classes[int(probs.argmax())],
        full["patch_map"].astype(np.float32),
        full["attention_map"].astype(np.float32),
    )
