"""Which stain normalisations a model card can serve, and user-supplied stain targets.

Qt-free. Macenko and Vahadane need a fitted target (stain vectors and concentrations of a
reference image); a card trained without one cannot serve them, so the Analyze widget
disables them with the reason *before* any model loads, and lets the user fit a target to
an image layer or load one written by ``pathreview stain fit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.stain.methods import STAIN_METHODS
from napari_pathreview.stain.targets import StainTargetError, load_target

__all__ = ["StainTargetError", "load_target", "stain_options", "fit_target", "normalisation_views"]

# The stain methods offered in the Analyze widget (after "card", the model card's own) are
# stain.methods.STAIN_METHODS, the one list.
#: Longest side an image is shrunk to before previewing methods.
PREVIEW_SIDE = 512
#: Most pixels of the pyramid level a target is fitted to: level 0, as ``pathreview stain
#: fit`` reads the file, unless a slide's is larger (then the finest level under this).
FIT_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class StainOption:
    """One entry of the stain picker: whether it can run, and why not."""

    method: str
    available: bool
    reason: str = ""


def _card_target_method(card: Any) -> str | None:
    target = getattr(card, "stain_target", None) or None
    if isinstance(target, Mapping) and target.get("method"):
        return str(target["method"]).lower()
    return None


def stain_options(card: Any, user_target: Mapping[str, Any] | None = None) -> list[StainOption]:
    """Every method with its availability for ``card`` (and a user's fitted target)."""
    card_method = str(getattr(card, "stain_method", "none") or "none").lower()
    fitted = {_card_target_method(card)} if card is not None else set()
    if user_target and user_target.get("method"):
        fitted.add(str(user_target["method"]).lower())
    options = [StainOption("card", True, f"the card's own: {card_method}")]
    for method in STAIN_METHODS:
        if method in ("none", "reinhard") or method in fitted:
            # Reinhard without a card target falls back to the BreaKHis preset statistics.
            options.append(StainOption(method, True))
            continue
        options.append(
            StainOption(
                method,
                False,
                f"{method} needs a fitted target and this model card has none; "
                "fit one to an image layer or load a target JSON below",
            )
        )
    if card is not None and card_method in ("macenko", "vahadane") and card_method not in fitted:
        options[0] = StainOption(
            "card",
            False,
            f"the card names {card_method} but holds no fitted target; load one below",
        )
    return options


def thumbnail(rgb: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """``rgb`` shrunk (by striding, no smoothing needed for stain statistics) to ≤ ``side``."""
    rgb = np.asarray(rgb)
    step = max(1, int(np.ceil(max(rgb.shape[:2]) / side)))
    return np.ascontiguousarray(rgb[::step, ::step, :3])


def fit_level(levels: Sequence[Any]) -> Any:
    """The pyramid level (level 0 first) a target is fitted to: the finest of at most
    ``FIT_MAX_PIXELS`` pixels (the coarsest when none is). Left as it is (a lazy slide level
    stays lazy): :func:`fit_target` reads it, in the dock's worker, not the viewer's thread."""
    small = [lv for lv in levels if int(np.prod(lv.shape[:2])) <= FIT_MAX_PIXELS]
    return small[0] if small else levels[-1]


def fit_target(method: str, rgb: np.ndarray) -> dict[str, Any]:
    """Fit ``method`` to an H&E image; returns the state a card or the predictor accepts.

    The whole image is fitted (the normaliser samples a bounded number of its pixels), so a
    target fitted to a layer equals ``pathreview stain fit --images`` on its file: fitted to
    a 2×-strided thumbnail, it moved Macenko's probabilities by ~1e-4 and Vahadane's ~1e-3.
    """
    from napari_pathreview.stain import get_normalizer

    if method in ("none", "card"):
        raise InvalidInputError(f"choose reinhard, macenko or vahadane to fit, not {method!r}")
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[-1] < 3:
        raise InvalidInputError(
            f"a stain target is fitted to an RGB H&E image; this one has shape {image.shape}"
        )
    from napari_pathreview.io import to_rgb_uint8

    normalizer = get_normalizer(method).fit(to_rgb_uint8(image))
    return normalizer.to_dict()


def normalisation_views(
    rgb: np.ndarray, targets: Mapping[str, Any], methods: Sequence[str]
) -> dict[str, np.ndarray]:
    """The image under each method, shrunk, for a side-by-side comparison.

    Args:
        rgb: the H&E image.
        targets: method → fitted state (the card's and the user's); Reinhard falls back to
            its preset. Methods with no target are skipped.
        methods: methods to show, "none" being the original.
    """
    from napari_pathreview.stain import REINHARD_BREAKHIS_PRESET, normalizer_from_dict

    image = thumbnail(np.asarray(rgb)).astype(np.uint8)
    views: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "none":
            views[method] = image
            continue
        state = targets.get(method)
        if state is None and method == "reinhard":
            state = REINHARD_BREAKHIS_PRESET
        if state is None:
            continue
        views[method] = np.asarray(normalizer_from_dict(dict(state)).transform(image))
    return views
