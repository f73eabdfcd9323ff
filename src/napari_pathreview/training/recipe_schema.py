"""Every rule a recipe's values must meet, checked before any image is decoded.

Types are enforced while the recipe is parsed (:mod:`.recipe`); this module holds the rest:
the allowed range of each numeric value and the rules that tie values together (split
fractions, an ensemble's k-fold lesion run, device and CAM names). So ``--set optim.lr=-1`` or
``--set eval.bootstrap=100000000`` is refused at once with the key, the value and the range,
instead of failing (or running for hours) mid-training, and every problem is listed at once.
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
    problems += _drop_rate_problems(recipe)
    problems += _cross_field_problems(recipe)
    return problems


def _drop_rate_problems(recipe: Any) -> list[str]:
    """``model.kwargs`` drop rates (timm's ``drop_rate``, ``drop_path_rate``, ...) are
    probabilities; out of range, timm fails only in the first training step."""
    rate = Range(0.0, 1.0, open_high=True)
    return [
        f"model.kwargs.{key}={value!r} is outside {rate.describe()}: a drop rate is a probability"
        for key, value in recipe.model.kwargs.items()
        if "drop" in key and key.endswith("rate") and not rate.admits(value)
    ]


def _cross_field_problems(recipe: Any) -> list[str]:
    """Rules that tie two or more values together, which no single range can express."""
    data = recipe.data
    problems = []
    if recipe.split.val_fraction + recipe.split.test_fraction >= 1:
        problems.append(
            f"split.val_fraction + split.test_fraction = "
            f"{recipe.split.val_fraction + recipe.split.test_fraction:g}: must be below 1"
        )
    if sum(phase.epochs for phase in recipe.phases) < 1:
        problems.append("phases: must train for at least one epoch in total")
    if data.source != "reviews" and not data.root:
        problems.append("data.root is required (a folder or CSV manifest)")
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
    if data.qc and recipe.modality != "histology":
        problems.append(
            f"data.qc drops images failing H&E quality rules (tissue darker than white glass, "
            f"pen ink, clipped stain); this recipe's modality is {recipe.modality!r}, whose "
            "images would all fail them: set data.qc: false"
        )
    if recipe.register.select == "ema" and not recipe.ema.enabled:
        problems.append("register.select: ema needs ema.enabled: true")
    if recipe.register.select == "ensemble":
        problems += _ensemble_problems(recipe)
    if recipe.lesion.bilateral and not (recipe.lesion.enabled and recipe.modality == "mammogram"):
        problems.append(
            "lesion.bilateral compares a woman's left and right mammograms: it needs "
            f"lesion.enabled: true and modality: mammogram (here lesion.enabled: "
            f"{str(recipe.lesion.enabled).lower()}, modality: {recipe.modality})"
        )
    if recipe.lesion.enabled and recipe.register.select == "topk":
        problems.append(
            "register.select: topk averages an image model's best checkpoints; a lesion run "
            "registers its best fold (best, or ema for the patch encoder's moving average) or "
            "the mean of its folds (ensemble)"
        )
    if recipe.lesion.enabled and recipe.lesion.frozen_encoder and recipe.register.select == "ema":
        problems.append(
            "register.select: ema keeps the patch encoder's moving average, and "
            "lesion.frozen_encoder does not train the encoder (use best or ensemble)"
        )
    problems += _class_weight_problems(recipe.loss.class_weights)
    problems += _name_problems(recipe)
    return problems


def _finite(value: Any) -> bool:
    """A finite real number (not a bool); an integer too large for a float is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # 1 followed by 400 zeros: no float holds it, so no tensor either
        return False


def _class_weight_problems(weights: Any) -> list[str]:
    """``loss.class_weights``: 'balanced', finite non-negative numbers, or null."""
    if isinstance(weights, list):
        bad = [w for w in weights if not _finite(w) or w < 0]
        if bad or not weights:
            return [
                f"loss.class_weights={weights!r}: give finite non-negative numbers, one per class"
            ]
    elif weights is not None and weights != "balanced":
        return [f"loss.class_weights={weights!r}: must be 'balanced', a list of numbers, or null"]
    return []


def _ensemble_problems(recipe: Any) -> list[str]:
    """A fold ensemble is registered from a lesion run's k-fold models, all on one input."""
    problems = []
    if not recipe.lesion.enabled:
        problems.append(
            "register.select: ensemble averages a lesion run's fold models; this recipe has "
            "lesion.enabled: false (use best, ema or topk)"
        )
    if not recipe.split.protocol.endswith("kfold"):
        problems.append(
            f"register.select: ensemble needs a k-fold split; split.protocol is "
            f"{recipe.split.protocol!r}"
        )
    if recipe.data.stain != "none":
        problems.append(
            f"register.select: ensemble cannot be combined with data.stain={recipe.data.stain!r}: "
            "each fold fits its own stain target, and one model card holds one"
        )
    return problems


def _name_problems(recipe: Any) -> list[str]:
    """Device, CAM method and registry names against the shared lists, before data is read."""
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.explain.methods import resolve_method
    from napari_pathreview.inference.device import DEVICES
    from napari_pathreview.registry.card import ModelCardError, validate_name

    problems = []
    if str(recipe.device).lower().split(":", 1)[0] not in DEVICES:
        problems.append(f"device: {recipe.device!r} is not one of {', '.join(DEVICES)}")
    for method in recipe.eval.cam_methods:
        try:
            resolve_method(method)
        except InvalidInputError as error:
            problems.append(f"eval.cam_methods: {error}")
    if recipe.register.enabled:
        key = "register.name" if recipe.register.name else "name"
        name = recipe.register.name or recipe.name.replace("_", "-")
        try:
            validate_name(name)
        except ModelCardError as error:
            problems.append(f"{key}={name!r}: the registry would refuse it ({error})")
    return problems


def unknown_keys_problem(cls: type, raw: Any, lists: dict) -> str | None:
    """One message naming every key of recipe mapping ``raw`` that no field of its section
    names (``section.key (did you mean section.other?)``) with each such section's valid keys;
    None when there is none. Found before anything is built, so one refusal lists the typos of
    every section rather than the first section's.

    Args:
        cls: The dataclass ``raw`` is read into.
        lists: Top-level key → dataclass of each item of a list section (``phases``).
    """
    found: list[tuple[str, str, list[str]]] = []
    _unknown_keys(cls, raw, "", lists, found)
    if not found:
        return None
    sections = {where: names for _, where, names in found}
    valid = "; ".join(
        f"{where or 'top level'}: {', '.join(names)}" for where, names in sections.items()
    )
    return f"unknown key(s) {', '.join(key for key, _, _ in found)}; valid keys: {valid}"


def _unknown_keys(cls: type, raw: Any, where: str, lists: dict, found: list) -> None:
    """Append (path with its suggestion, section, section's keys) for each unknown key."""
    import difflib
    import typing

    if not isinstance(raw, dict):  # a section that is not a mapping: the parser names it
        return
    hints = typing.get_type_hints(cls)
    names = sorted(f.name for f in dataclasses.fields(cls))
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            prefix = f"{where}." if where else ""
            found.append(
                (path + (f" (did you mean {prefix}{close[0]}?)" if close else ""), where, names)
            )
        elif not where and key in lists and isinstance(value, list):
            for i, item in enumerate(value):
                _unknown_keys(lists[key], item, f"{path}.{i}", {}, found)
        elif (section := _section_class(hints[key])) is not None:
            _unknown_keys(section, value, path, {}, found)


def _section_class(annotation: Any) -> type | None:
    """The dataclass a field holds (through ``X | None``), else None."""
    import typing

    options = typing.get_args(annotation) if typing.get_origin(annotation) else (annotation,)
    return next((o for o in options if dataclasses.is_dataclass(o)), None)
