"""Training recipes: YAML → frozen dataclasses, with ``--set a.b=c`` overrides and validation.

A recipe is the whole description of a run; the run folder and the model card store it
back as a dict, so a model can always be retrained from its card. Unknown keys are errors
(a typo should not silently fall back to a default), and every error names the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.modality import MODALITIES
from napari_pathreview.preprocessing import CROP_MODES, INTENSITY_MODES
from napari_pathreview.review.manifest import DEFAULT_DISAGREEMENT_WEIGHT
from napari_pathreview.stain.methods import STAIN_METHODS
from napari_pathreview.training.recipe_schema import range_problems, unknown_keys_problem
from napari_pathreview.tta import TTA_MODES


class RecipeError(InvalidInputError):
    """The recipe file or an override is malformed; the message names the offending key."""


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they become tensors."""

    source: str = "csv"  # csv | folder | breakhis | mias | reviews
    root: str = ""  # folder, or CSV file for source=csv; relative to the recipe file
    task: str = "binary"  # binary | subtype | mammogram | free label column name
    label_column: str = "label"
    magnification: int | None = None  # BreaKHis: keep one magnification
    subset: int | None = None  # keep at most this many images (stratified), for smoke runs
    image_size: int = 224
    resize: int | None = None  # cache images at this square size (default image_size * 8 / 7)
    crop: str = "none"  # none | breast (mammograms: crop to the breast before resizing)
    # resample every image to this physical pixel size (µm for histology, mm for mammograms)
    # before fitting it to the `resize` square (cut or padded, aspect kept); None stretches
    pixel_size: float | None = None
    grayscale: bool = False  # replicate a grey channel (mammograms)
    intensity: str = "none"  # none | breast (stretch each mammogram's breast grey levels)
    stain: str = "none"  # none | reinhard | macenko | vahadane
    stain_target: str = ""  # "" (fit on training images), "breakhis_preset", or an image path
    qc: bool = False  # drop images failing stain.assess_quality
    qc_blur_threshold: float | None = None
    qc_tissue_fraction: float | None = None
    # --from-reviews: weight of reviews disagreeing with the model (the export's one default)
    disagreement_weight: float = DEFAULT_DISAGREEMENT_WEIGHT
    external_test: str = ""  # optional second dataset (e.g. BACH csv) evaluated after training


@dataclass(frozen=True)
class SplitConfig:
    """How samples are split; see ``splits.PROTOCOLS``."""

    protocol: str = "patient_holdout"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    folds: int = 5
    group_by: str = "patient"  # patient | patient_stem (BreaKHis codes sharing a numeric stem)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture from ``models.create_model`` (any timm name works)."""

    architecture: str = "resnet18"
    pretrained: bool = False
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; phases may replace it."""

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    rotate: float = 0.0  # ± degrees
    color_jitter: float = 0.0
    random_crop: bool = True
    mixup: float = 0.0  # timm Mixup alpha
    cutmix: float = 0.0  # timm CutMix alpha
    mix_prob: float = 1.0


@dataclass(frozen=True)
class PhaseConfig:
    """One stage of phased fine-tuning (seeds 000, 001)."""

    name: str = "all"
    epochs: int = 10
    train: list = field(default_factory=lambda: ["all"])  # group names, "all", "head", "last:N"
    lr: float | None = None  # default optim.lr
    layer_decay: float = 1.0  # lr × decay^(distance from head) per parameter group
    augment: AugmentConfig | None = None


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, batch and loop settings."""

    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 16
    grad_clip: float | None = None
    amp: bool = False
    sampler: str = "none"  # none | weighted (WeightedRandomSampler, inverse class frequency)
    num_workers: int = 0


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule per phase: cosine (timm, warmup), step, plateau, none."""

    name: str = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 1e-6
    step_size: int = 5
    gamma: float = 0.1
    plateau_metric: str = "roc_auc"
    plateau_patience: int = 3
    plateau_factor: float = 0.2


@dataclass(frozen=True)
class LossConfig:
    """See ``losses.build_loss``; class_weights 'balanced' derives them from the training labels."""

    name: str = "ce"
    label_smoothing: float = 0.0
    class_weights: typing.Any = None  # None | "balanced" | list of floats
    focal_gamma: float = 2.0
    dice_weight: float = 0.5


@dataclass(frozen=True)
class EmaConfig:
    """timm ModelEmaV3 of the weights."""

    enabled: bool = False
    decay: float = 0.999


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the validation metric has not improved for ``patience`` epochs."""

    metric: str = "balanced_accuracy"
    mode: str = "max"
    patience: int | None = None


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the held-out part."""

    tta: str = "none"  # none | flips | d4
    bootstrap: int = 1000
    threshold: str = "youden"  # youden (binary, on validation) | argmax
    cam_iou: bool = False  # seed 004: CAM IoU against MIAS ROIs
    cam_methods: list = field(default_factory=lambda: ["gradcam"])
    cam_images: int = 8


@dataclass(frozen=True)
class LesionConfig:
    """Lesion-aware training (issue 14): ROI patches at a physical resolution, MIL pooling."""

    enabled: bool = False
    pixel_size: float = 0.0  # physical size of one training pixel (0: the images' own)
    source_pixel_size: float = 0.0  # of images the reader cannot size (0: they are refused)
    pixel_unit: str = "mm"  # mm (mammograms) | um (histology)
    patch_size: int = 32
    stride: int = 16  # of the patch grid an image is pooled over
    context: int = 4  # extra pixels around training patches for random crops
    positives_per_image: int = 16
    negatives_per_image: int = 16
    max_per_patient: int = 64
    margin: int = 8  # pixels between negatives and any ROI
    background_fraction: float = 0.1
    negative_class: str = ""  # default: the first class
    pooling: str = "attention"  # attention | max | topk
    topk: float = 0.05
    frozen_encoder: str = ""  # "" trains the encoder on patches; registry:NAME / timm:ARCH=W
    hard_negative_rounds: int = 0
    mil_epochs: int = 40
    mil_lr: float = 0.001
    mil_train_classifier: bool = False  # true: bag labels also refit the patch classifier
    map_threshold: float = 0.5
    bilateral: bool = False  # mammograms: also decide each film against the woman's other film


@dataclass(frozen=True)
class RegisterConfig:
    """What goes into the registry after training."""

    enabled: bool = True
    name: str = ""  # default: recipe name
    select: str = "best"  # best | ema | topk | ensemble (lesion runs: the mean of all folds)
    topk: int = 3
    description: str = ""


@dataclass(frozen=True)
class Recipe:
    """A whole training run."""

    name: str = "run"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    modality: str = "histology"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    phases: list = field(default_factory=lambda: [PhaseConfig()])
    ema: EmaConfig = field(default_factory=EmaConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lesion: LesionConfig = field(default_factory=LesionConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    base_dir: str = ""  # folder of the recipe file; relative data paths resolve against it

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-able) for metrics.json and the model card."""
        return dataclasses.asdict(self)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)


_CHOICES = {
    "data.source": ("csv", "folder", "breakhis", "mias", "reviews"),
    "data.crop": CROP_MODES,
    "data.intensity": INTENSITY_MODES,
    "data.stain": STAIN_METHODS,
    "split.protocol": ("patient_holdout", "patient_kfold", "image_holdout", "image_kfold"),
    "split.group_by": ("patient", "patient_stem"),
    "optim.optimizer": ("adamw", "adam", "sgd"),
    "optim.sampler": ("none", "weighted"),
    "schedule.name": ("cosine", "step", "plateau", "none"),
    "loss.name": ("ce", "focal", "ce_dice"),
    "early_stopping.mode": ("max", "min"),
    "eval.tta": TTA_MODES,
    "eval.threshold": ("youden", "argmax"),
    "register.select": ("best", "ema", "topk", "ensemble"),
    "modality": MODALITIES,
    "lesion.pixel_unit": ("mm", "um"),
    "lesion.pooling": ("attention", "max", "topk"),
}
_LIST_ITEM_TYPES = {"phases": PhaseConfig}


def _coerce(value, annotation, where: str):
    """Turn a YAML value into the annotated type, or raise RecipeError naming ``where``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    if annotation is typing.Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise RecipeError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: expected a number, got {value!r}") from None
        except OverflowError:  # an integer beyond any float: 1 followed by 400 zeros, say
            digits = int(math.log10(abs(value))) + 1
            raise RecipeError(
                f"{where}: must be a finite number, got an integer of {digits} digits"
            ) from None
        if annotation is int:
            if not number.is_integer():
                raise RecipeError(f"{where}: expected an integer, got {value!r}")
            return int(number)
        return number
    if annotation is str:
        if isinstance(value, dict | list):
            raise RecipeError(f"{where}: expected text, got {value!r}")
        return str(value)
    if annotation in (list, dict):
        if not isinstance(value, annotation):
            raise RecipeError(f"{where}: expected a {annotation.__name__}, got {value!r}")
        return value
    return value


def _build(cls, raw, where: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)  # unknown keys were refused before (load_recipe)
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key in _LIST_ITEM_TYPES and cls is Recipe:
            if not isinstance(value, list) or not value:
                raise RecipeError(f"{path}: expected a non-empty list of phases")
            values[key] = [
                _build(_LIST_ITEM_TYPES[key], item, f"{path}.{i}") for i, item in enumerate(value)
            ]
            continue
        values[key] = _coerce(value, hints[key], path)
        if path in _CHOICES and values[key] not in _CHOICES[path]:
            raise RecipeError(f"{path}: {values[key]!r} is not one of {', '.join(_CHOICES[path])}")
    return cls(**values)


def _validate(recipe: Recipe) -> None:
    """Every range and cross-field rule (:mod:`.recipe_schema`), reported together."""
    problems = range_problems(recipe)
    if problems:
        raise RecipeError("invalid recipe value(s): " + "; ".join(problems))


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` in place; the value is parsed as YAML (numbers, lists, null).

    ``phases.*.epochs=1`` sets the key in every list item, ``phases.0.lr=1e-4`` in one.
    """
    if "=" not in assignment:
        raise RecipeError(f"override {assignment!r} must look like key.path=value")
    key, text = assignment.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as error:
        raise RecipeError(f"override {assignment!r}: value is not valid YAML ({error})") from None
    except ValueError as error:  # a date-like 2020-13-45, an integer of over 4300 digits
        shown = text if len(text) <= 40 else f"{text[:20]}…({len(text)} characters)"
        raise RecipeError(f"override {key.strip()}={shown}: cannot read it ({error})") from None
    parts = key.strip().split(".")
    _assign(raw, parts, value, key)


def _assign(node, parts: list[str], value, key: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets = range(len(node)) if head == "*" else [_index(head, node, key)]
        for i in targets:
            if rest:
                _assign(node[i], rest, value, key)
            else:
                node[i] = value
        return
    if not isinstance(node, dict):
        raise RecipeError(f"override {key!r}: {head!r} is not inside a mapping")
    if not rest:
        node[head] = value
        return
    if node.get(head) is None:
        node[head] = [PhaseConfig().__dict__.copy()] if head == "phases" else {}
    _assign(node[head], rest, value, key)


def _index(text: str, node: list, key: str) -> int:
    if not text.isdigit() or int(text) >= len(node):
        raise RecipeError(f"override {key!r}: {text!r} is not an index of a {len(node)}-item list")
    return int(text)


def read_recipe_yaml(path: Path) -> dict:
    """The mapping in recipe file ``path``; every way it can be unreadable names the file."""
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (not UTF-8); a recipe is YAML") from None
    except OSError as error:
        raise RecipeError(f"{path}: cannot read it ({error.strerror or error})") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: 2020-13-45, a 5000-digit integer
        raise RecipeError(f"{path}: not valid YAML ({error})") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to be a recipe") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{path}: a recipe must be a YAML mapping of keys, got a {type(raw).__name__}"
        )
    return raw


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it: mappings merge key by key, anything else
    (numbers, text, lists such as ``phases``) is replaced whole."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _with_base(raw: dict, folder: Path, chain: tuple[Path, ...]) -> dict:
    """Resolve ``extends: OTHER.yaml`` (read beside the recipe that names it): the other
    recipe, itself possibly extending a third, with this one's keys laid over it.

    A recipe that differs from another by a few keys says only those, so the two cannot
    drift apart. Relative data paths are still read beside the recipe that is run.
    """
    if "extends" not in raw:
        return raw
    raw = dict(raw)
    named = raw.pop("extends")
    where = f"{chain[-1]}: extends" if chain else "extends"
    if not isinstance(named, str) or not named.strip():
        raise RecipeError(f"{where} must name a recipe file, got {named!r}")
    path = (folder / Path(named).expanduser()).resolve()
    if path in chain:
        loop = " → ".join(str(p) for p in (*chain, path))
        raise RecipeError(f"{where}: recipes extend each other in a loop: {loop}")
    if not path.is_file():
        raise RecipeError(f"{where}: recipe file not found: {path}")
    base = _with_base(read_recipe_yaml(path), path.parent, (*chain, path))
    base.pop("name", None)  # a recipe is named for itself, not for the one it extends
    return _merged(base, raw)


def load_recipe(
    recipe: str | Path | Mapping, overrides: Sequence[str] = (), base_dir: str | Path | None = None
) -> Recipe:
    """Read a recipe file (or dict), apply overrides, validate, and return the frozen Recipe."""
    if isinstance(recipe, Mapping):
        raw = yaml.safe_load(yaml.safe_dump(dict(recipe)))  # deep copy through YAML
        folder = Path(base_dir) if base_dir else Path.cwd()
        raw = _with_base(raw, folder, ()) if isinstance(raw, dict) else raw
    else:
        path = Path(recipe)
        raw = _with_base(read_recipe_yaml(path), path.resolve().parent, (path.resolve(),))
        folder = Path(base_dir) if base_dir else path.resolve().parent
        raw.setdefault("name", path.stem)
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a YAML mapping, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    raw.setdefault("base_dir", str(folder))
    unknown = unknown_keys_problem(Recipe, raw, _LIST_ITEM_TYPES)
    if unknown:  # every section's typos at once, before any value is read
        raise RecipeError(unknown)
    parsed = _build(Recipe, raw, "")
    _validate(parsed)
    return parsed


def resolve_path(recipe: Recipe, text: str) -> Path:
    """A recipe's data path: ~ and $VARS expanded, relative to the recipe's folder."""
    import os

    path = Path(os.path.expandvars(os.path.expanduser(text)))
    if path.is_absolute():
        return path
    beside = Path(recipe.base_dir) / path
    # In a wheel the recipes folder sits one level deeper than training/ in the repository, and
    # sample_data/ is inside the package: "../sample_data/x" from training/ resolves to it.
    packaged = Path(__file__).resolve().parent / path
    return packaged if not beside.exists() and packaged.exists() else beside
