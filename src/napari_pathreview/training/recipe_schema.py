"""The allowed range of every numeric recipe value, checked before any image is decoded.

Types are enforced while the recipe is parsed (:mod:`.recipe`); this table adds the ranges,
so ``--set optim.lr=-1`` or ``--set eval.bootstrap=100000000`` is refused at once with the
key, the value and the range, instead of failing (or running for hours) mid-training.
The checks return messages rather than raising, so :mod:`.recipe` (which owns
``RecipeError``) raises them and this module imports nothing of it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_BOOTSTRAP = 100_000
MAX_EPOCHS = 100_000
MAX_IMAGE_SIZE = 8192


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (strict where ``open_low``/``open_high``); None when allowed."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    none_ok: bool = False

    def admits(self, value: Any) -> bool:
        if value is None:
            return self.none_ok
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return bool(above and below)

    def describe(self) -> str:
        left = "(" if self.open_low else "["
        right = ")" if self.open_high else "]"
        text = f"{left}{_num(self.low)}, {_num(self.high)}{right}"
        return text + (" or null" if self.none_ok else "")


def _num(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


POSITIVE = Range(0.0, open_low=True)
NON_NEGATIVE = Range(0.0)
FRACTION = Range(0.0, 1.0)
AT_LEAST_ONE = Range(1)

#: Key (``phases.*`` for every phase) → allowed range.
RANGES: dict[str, Range] = {
    "seed": Range(0, MAX_SEED),
    "data.magnification": Range(1, 1000, none_ok=True),
    "data.subset": Range(1, none_ok=True),
    "data.image_size": Range(16, MAX_IMAGE_SIZE),
    "data.resize": Range(16, MAX_IMAGE_SIZE, none_ok=True),
    "data.qc_blur_threshold": Range(0.0, none_ok=True),
    "data.qc_tissue_fraction": Range(0.0, 1.0, none_ok=True),
    "data.disagreement_weight": NON_NEGATIVE,
    "split.val_fraction": Range(0.0, 1.0, open_low=True, open_high=True),
    "split.test_fraction": Range(0.0, 1.0, open_high=True),
    "split.folds": Range(2, 100),
    "augment.rotate": Range(0.0, 180.0),
    "augment.color_jitter": FRACTION,
    "augment.mixup": NON_NEGATIVE,
    "augment.cutmix": NON_NEGATIVE,
    "augment.mix_prob": FRACTION,
    "phases.*.epochs": Range(0, MAX_EPOCHS),
    "phases.*.lr": Range(0.0, 10.0, open_low=True, none_ok=True),
    "phases.*.layer_decay": Range(0.0, 1.0, open_low=True),
    "optim.lr": Range(0.0, 10.0, open_low=True),
    "optim.weight_decay": NON_NEGATIVE,
    "optim.momentum": Range(0.0, 1.0, open_high=True),
    "optim.batch_size": Range(1, 65_536),
    "optim.grad_clip": Range(0.0, open_low=True, none_ok=True),
    "optim.num_workers": Range(0, 256),
    "schedule.warmup_epochs": Range(0, MAX_EPOCHS),
    "schedule.min_lr": NON_NEGATIVE,
    "schedule.step_size": AT_LEAST_ONE,
    "schedule.gamma": Range(0.0, 1.0, open_low=True),
    "schedule.plateau_patience": NON_NEGATIVE,
    "schedule.plateau_factor": Range(0.0, 1.0, open_low=True, open_high=True),
    "loss.label_smoothing": Range(0.0, 1.0, open_high=True),
    "loss.focal_gamma": NON_NEGATIVE,
    "loss.dice_weight": NON_NEGATIVE,
    "ema.decay": Range(0.0, 1.0, open_low=True, open_high=True),
    "early_stopping.patience": Range(1, none_ok=True),
    "eval.bootstrap": Range(0, MAX_BOOTSTRAP),
    "eval.cam_images": NON_NEGATIVE,
    "register.topk": AT_LEAST_ONE,
}


def _values(recipe: Any, key: str) -> list[tuple[str, Any]]:
    """(concrete key, value) for ``key``; ``phases.*.x`` expands to every phase."""
    head, _, rest = key.partition(".*.")
    if rest:
        return [
            (f"{head}.{i}.{rest}", _get(item, rest)) for i, item in enumerate(_get(recipe, head))
        ]
    return [(key, _get(recipe, key))]


def _get(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _non_finite(node: Any, prefix: str = "") -> list[str]:
    """Keys of float values that are NaN or infinite, anywhere in the recipe."""
    found: list[str] = []
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            found += _non_finite(getattr(node, f.name), f"{prefix}{f.name}.")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            found += _non_finite(item, f"{prefix}{i}.")
    elif isinstance(node, float) and not math.isfinite(node):
        found.append(f"{prefix[:-1]}={node}")
    return found


def range_problems(recipe: Any) -> list[str]:
    """One message per value outside its range (key, value, allowed range); [] when all fit."""
    problems = [f"{item}: must be a finite number" for item in _non_finite(recipe)]
    for key, allowed in RANGES.items():
        for concrete, value in _values(recipe, key):
            if isinstance(value, float) and not math.isfinite(value):
                continue  # reported above
            if not allowed.admits(value):
                problems.append(f"{concrete}={value!r} is outside {allowed.describe()}")
    problems += _cross_field_problems(recipe)
    return problems


def _cross_field_problems(recipe: Any) -> list[str]:
    data = recipe.data
    problems = []
    if data.resize is not None and data.resize < data.image_size:
        problems.append(
            f"data.image_size={data.image_size} is larger than data.resize={data.resize}: "
            "the crop must fit inside the resized image (raise data.resize or leave it null)"
        )
    if data.intensity == "breast" and recipe.modality != "mammogram":
        problems.append(
            f"data.intensity='breast' stretches a mammogram's breast grey levels; this recipe's "
            f"modality is {recipe.modality!r} (use data.stain for histology colour)"
        )
    weights = recipe.loss.class_weights
    if isinstance(weights, list):
        bad = [
            w
            for w in weights
            if isinstance(w, bool)
            or not isinstance(w, (int, float))
            or not math.isfinite(w)
            or w < 0
        ]
        if bad or not weights:
            problems.append(
                f"loss.class_weights={weights!r}: give finite non-negative numbers, one per class"
            )
    elif weights is not None and weights != "balanced":
        problems.append(
            f"loss.class_weights={weights!r}: must be 'balanced', a list of numbers, or null"
        )
    problems += _name_problems(recipe)
    return problems


def _name_problems(recipe: Any) -> list[str]:
    """``register.name`` (or the recipe name it defaults to) as the registry will check it."""
    from napari_pathreview.registry.card import ModelCardError, validate_name

    if not recipe.register.enabled:
        return []
    key = "register.name" if recipe.register.name else "name"
    name = recipe.register.name or recipe.name.replace("_", "-")
    try:
        validate_name(name)
    except ModelCardError as error:
        return [f"{key}={name!r}: the registry would refuse it ({error})"]
    return []
