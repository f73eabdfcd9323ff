"""The model card: everything needed to rebuild, feed, threshold and judge a registered model.

A frozen dataclass validated on construction, so a card that exists is a card that is right:
a hand-edited ``card.yaml`` with a missing field or a wrong type fails with the field's name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Any

from napari_pathreview.bilateral import read_card_entry
from napari_pathreview.errors import InvalidInputError
from napari_pathreview.modality import HISTOLOGY, MODALITIES
from napari_pathreview.preprocessing import (
    PreprocessSpec,
    PreprocessSpecError,
    default_resize,
)
from napari_pathreview.stain.methods import STAIN_METHODS
from napari_pathreview.tta import TTA_MODES

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,8}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: Fields the registry writes; a stored card without them is incomplete.
STORED_FIELDS: tuple[str, ...] = (
    "version",
    "input_size",
    "mean",
    "std",
    "weights_sha256",
    "created_at",
)


class ModelCardError(InvalidInputError):
    """A model card field is missing, unknown or of the wrong type (the message names it)."""


def validate_name(name: object, what: str = "model name") -> str:
    """A registry-safe name: letters, digits, ``_ . -``; no separators, no ``..``, not absolute.

    Names become folder names, so anything that could escape the registry folder is refused.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise ModelCardError(
            f"invalid {what} {name!r}: use 1-100 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit; no '/', '\\', '..', '@' or spaces)"
        )
    return name


def validate_version(version: object) -> str:
    """A version string "1", "2", ... (ints are accepted and converted)."""
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if not isinstance(text, str) or not VERSION_PATTERN.match(text):
        raise ModelCardError(f"invalid version {version!r}: versions are positive integers")
    return text


def _plain(value: Any) -> Any:
    """Nested value with numpy scalars/arrays and tuples turned into YAML-safe Python types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / torch scalars and arrays
        return _plain(value.tolist())
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ModelCardError(f"value {value!r} of type {type(value).__name__} cannot go into a card")


@dataclass(frozen=True)
class ModelCard:
    """A registered model's description (DESIGN.md § Formats).

    Attributes:
        name: Registry name (folder-safe).
        architecture: ``create_model`` name that rebuilds the network.
        task: "binary", "subtype", "mammogram" or a free label.
        classes: Class names in logit order; for binary, ``classes[-1]`` is the positive class.
        modality: "histology" or "mammogram".
        version: "1", "2", ... assigned by the registry ("" before registration).
        architecture_kwargs: Extra ``create_model`` arguments (e.g. drop rates).
        input_size: (C, H, W) the model expects; None → the architecture's default.
        mean: Per-channel normalisation mean; None → the architecture's.
        std: Per-channel normalisation std; None → the architecture's.
        stain_method: Stain normaliser to apply before the model.
        stain_target: The fitted normaliser (``normalizer.to_dict()``) or None.
        preprocess: How an image becomes this model's input (``PreprocessSpec``: geometry,
            normalisation, trained-at resolution, stain): the one source training evaluation,
            the Predictor and the slide engine build from. The flat fields above mirror it
            and must agree with it. Cards without it (first wave) get it from
            :func:`first_wave_preprocess` when read.
        threshold: Decision threshold on P(classes[-1]) for binary tasks (Youden's J).
        cam_target_layers: Module paths for CAMs; empty → the architecture's.
        metrics: Evaluation figures (with their split protocol below).
        split_protocol: How the metrics were obtained (e.g. "patient-level 70/15/15").
        recipe: The training recipe as run.
        data_fingerprint: Hash of the training manifest.
        weights_sha256: SHA-256 of weights.safetensors (written by the registry).
        created_at: ISO-8601 time of registration.
        description: Free text; demo models say so here.
        bilateral: Mammogram models: the two-film decision's calibration
            (``bilateral.card_entry``), used when a film is read against the woman's other film.
        tta: The test-time augmentation the threshold, the two-film calibration and the test
            figures were obtained under (the run's ``eval.tta``): the views ``predict``, the
            slide engine and the Analyze dock use unless told otherwise. Cards written before
            this field take it from ``metrics.tta`` (else "none").
        qc: Histology models: the quality-control thresholds (``stain.QCConfig``, every field)
            the model was trained under (the run's ``data.qc_*``), which ``predict``, the slide
            engine and the Analyze dock flag images by. Cards written before this field take
            them from their recorded recipe's ``data.qc_*``, else QCConfig's defaults. Refused
            on a mammogram card: its images get no QC, so the thresholds would be ignored.
    """

    name: str
    architecture: str
    task: str
    classes: tuple[str, ...]
    modality: str
    version: str = ""
    architecture_kwargs: dict = field(default_factory=dict)
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    stain_method: str = "none"
    stain_target: dict | None = None
    preprocess: PreprocessSpec | None = None
    threshold: float | None = None
    cam_target_layers: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    split_protocol: str = ""
    recipe: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    weights_sha256: str = ""
    created_at: str = ""
    description: str = ""
    bilateral: dict | None = None
    tta: str | None = None
    qc: dict | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        validate_name(self.name)
        if self.version != "":
            set_(self, "version", validate_version(self.version))
        for name in ("architecture", "task", "split_protocol", "data_fingerprint", "description"):
            _expect(name, getattr(self, name), str)
        if not self.architecture or not self.task:
            raise ModelCardError("card field 'architecture'/'task' must not be empty")
        set_(self, "classes", _str_tuple("classes", self.classes))
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ModelCardError(f"card field 'classes' needs distinct names, got {self.classes}")
        if self.task == "binary" and len(self.classes) != 2:
            raise ModelCardError(
                f"card field 'task' is 'binary' but 'classes' lists {len(self.classes)}: "
                f"{self.classes}"
            )
        _choice("modality", self.modality, MODALITIES)
        _choice("stain_method", self.stain_method, STAIN_METHODS)
        for name in ("architecture_kwargs", "metrics", "recipe"):
            set_(self, name, _plain(_expect(name, getattr(self, name), Mapping)))
        if self.stain_target is not None:
            set_(self, "stain_target", _plain(_expect("stain_target", self.stain_target, Mapping)))
        self._validate_geometry()
        self._resolve_preprocess()
        self._validate_bilateral()
        if self.tta is None:  # a card from before the field: its run's eval.tta, if recorded
            recorded = self.metrics.get("tta")
            set_(self, "tta", recorded if recorded in TTA_MODES else "none")
        _choice("tta", self.tta, TTA_MODES)
        self._resolve_qc()
        if self.threshold is not None:
            value = _expect("threshold", self.threshold, (int, float))
            if not 0.0 <= float(value) <= 1.0 or math.isnan(float(value)):
                raise ModelCardError(f"card field 'threshold' must be in [0, 1], got {value}")
            set_(self, "threshold", float(value))
        set_(self, "cam_target_layers", _str_tuple("cam_target_layers", self.cam_target_layers))
        if self.weights_sha256 and not SHA256_PATTERN.match(str(self.weights_sha256)):
            raise ModelCardError("card field 'weights_sha256' must be 64 lowercase hex digits")
        if _expect("created_at", self.created_at, str):
            try:
                datetime.fromisoformat(self.created_at)
            except ValueError as error:
                raise ModelCardError(f"card field 'created_at' is not ISO-8601: {error}") from error

    def _validate_geometry(self) -> None:
        set_ = object.__setattr__
        if self.input_size is not None:
            size = _number_tuple("input_size", self.input_size, int)
            if len(size) != 3 or min(size) <= 0:
                raise ModelCardError(f"card field 'input_size' must be (C, H, W) > 0, got {size}")
            set_(self, "input_size", size)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, _number_tuple(name, value, float))
                channels = self.input_size[0] if self.input_size else len(getattr(self, name))
                if len(getattr(self, name)) != channels:
                    raise ModelCardError(f"card field {name!r} needs {channels} values")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and not all(math.isfinite(v) for v in value):
                raise ModelCardError(f"card field {name!r} must be finite numbers, got {value}")
        if self.std is not None and min(self.std) <= 0:
            raise ModelCardError(f"card field 'std' must be positive, got {self.std}")

    def _validate_bilateral(self) -> None:
        if self.bilateral is None:
            return
        if self.modality != "mammogram":
            raise ModelCardError("card field 'bilateral' (left vs right film) is for mammograms")
        entry = _plain(_expect("bilateral", self.bilateral, Mapping))
        try:
            read_card_entry(entry, self.classes)
        except InvalidInputError as error:
            raise ModelCardError(f"card field {error}") from error
        object.__setattr__(self, "bilateral", entry)

    def _resolve_qc(self) -> None:
        """Validate the QC thresholds; fill them for a histology card written before them."""
        from napari_pathreview.stain.qc_config import QCConfig, QCConfigError, recipe_qc_config

        qc = self.qc
        if qc is not None and self.modality != HISTOLOGY:
            raise ModelCardError(
                "card field 'qc' holds H&E quality-control thresholds (tissue darker than "
                "white glass, pen ink, clipped stain); this card's modality is "
                f"{self.modality!r}, whose images get no QC, so they would be ignored: "
                "remove 'qc' from the card"
            )
        try:
            if qc is not None:
                config = QCConfig(**_plain(_expect("qc", qc, Mapping)))
            elif self.modality == HISTOLOGY:
                data = self.recipe.get("data")
                config = recipe_qc_config(data if isinstance(data, Mapping) else {})
            else:
                return
        except QCConfigError as error:
            name = f"'qc.{error.field}'"
            raise ModelCardError(f"card field {error.naming({error.field: name})}") from None
        except TypeError:  # an unknown threshold name
            known = sorted(QCConfig().to_dict())
            raise ModelCardError(f"card field 'qc' takes {known}, got {sorted(qc)}") from None
        object.__setattr__(self, "qc", config.to_dict())

    def _resolve_preprocess(self) -> None:
        """Parse the spec, fill the flat fields from it (or it from them), demand agreement."""
        set_ = object.__setattr__
        spec = self.preprocess
        if isinstance(spec, Mapping):
            try:
                spec = PreprocessSpec.from_dict(spec)
            except PreprocessSpecError as error:
                raise ModelCardError(f"card field 'preprocess': {error}") from error
        if spec is None:
            if None not in (self.input_size, self.mean, self.std):
                set_(self, "preprocess", first_wave_preprocess(self))
            return
        if not isinstance(spec, PreprocessSpec):
            raise ModelCardError(f"card field 'preprocess' must be a mapping, got {spec!r}")
        set_(self, "preprocess", spec)
        stain_given = self.stain_method != "none" or self.stain_target is not None
        pairs = [("input_size", spec.input_size), ("mean", spec.mean), ("std", spec.std)]
        if stain_given:
            pairs += [("stain_method", spec.stain_method), ("stain_target", spec.stain_target)]
        else:
            set_(self, "stain_method", spec.stain_method)
            set_(self, "stain_target", _plain(spec.stain_target) if spec.stain_target else None)
        for name, value in pairs:
            mine = getattr(self, name)
            if mine is None:
                set_(self, name, value)
            elif _plain(mine) != _plain(value):
                raise ModelCardError(
                    f"card field {name!r} ({mine!r}) disagrees with preprocess.{name} ({value!r})"
                )

    @property
    def ref(self) -> str:
        """``name@version`` as the CLI and Predictor.from_registry accept it."""
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict (tuples become lists)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, PreprocessSpec) else _plain(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], complete: bool = False) -> ModelCard:
        """Build and validate a card.

        Args:
            data: Field values (unknown keys are refused: they are usually typos).
            complete: Also require the fields the registry writes (version, input_size, mean,
                std, weights_sha256, created_at), as a stored card must have.

        Raises:
            ModelCardError: naming the missing, unknown or ill-typed field.
        """
        if not isinstance(data, Mapping):
            raise ModelCardError(f"a model card must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelCardError(f"unknown card field(s) {unknown}; known fields: {sorted(known)}")
        required = [
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        ]
        required += list(STORED_FIELDS) if complete else []
        for name in required:
            if name not in data or data[name] in (None, ""):
                raise ModelCardError(f"model card is missing required field {name!r}")
        return cls(**dict(data))


def reading_tta(card: object, tta: str | None) -> str:
    """The views a model is read with: ``tta`` when given, else its card's (``ModelCard.tta``;
    "none" for a card-like object without one)."""
    return (getattr(card, "tta", None) or "none") if tta is None else tta


def qc_config(card: Any) -> Any:
    """The ``stain.QCConfig`` a model's images are judged by: its card's ``qc`` (defaults for a
    card-like object without one)."""
    from napari_pathreview.stain.qc_config import QCConfig

    return QCConfig(**(getattr(card, "qc", None) or {}))


def decision_threshold(card: Any, classes: Any) -> float | None:
    """The binary decision threshold (the card's, else 0.5), or None for argmax decisions."""
    if len(classes) != 2:
        return None
    return 0.5 if card.threshold is None else float(card.threshold)


def tta_mismatch(card: ModelCard, tta: str) -> str | None:
    """Why decisions made with ``tta`` may be off for this card, or None when they are not.

    A threshold (binary) or a two-film calibration fitted on probabilities averaged over one set
    of views does not carry over exactly to another set: the averaged probabilities are
    steadier, so the same cut-off sits elsewhere in their distribution.
    """
    if tta == card.tta:
        return None
    fitted = [
        name
        for name, present in (
            ("threshold", card.threshold is not None and card.num_classes == 2),
            ("two-film calibration", card.bilateral is not None),
        )
        if present
    ]
    if not fitted:
        return None
    verb = "were" if len(fitted) > 1 else "was"
    return (
        f"model {card.ref}'s {' and '.join(fitted)} {verb} fitted under test-time augmentation "
        f"{card.tta!r}; read with {tta!r}, its decisions may shift (the card's TTA is the default)"
    )


def first_wave_preprocess(card: ModelCard) -> PreprocessSpec:
    """The one-time migration of a first-wave card (written before cards had ``preprocess``).

    Such cards (complete: input size, mean and std present, as the registry always wrote
    them) fed the model as their training evaluation did: the flat ``input_size`` /
    ``mean`` / ``std`` / stain fields, and from ``recipe.data`` the resize square
    (``resize``, default ``default_resize(image_size)``) and crop mode; images without a
    recipe were resized straight to the input size. Their physical resolution was never
    recorded, so ``pixel_size`` stays None (never guessed). Applied when such a card is read;
    re-registering the model writes the derived spec into its card.
    """
    size = card.input_size
    data = card.recipe.get("data") if isinstance(card.recipe, Mapping) else None
    resize, crop = None, "none"
    if isinstance(data, Mapping) and data.get("image_size"):
        resize = int(data.get("resize") or default_resize(int(data["image_size"])))
        crop = str(data.get("crop") or "none")
        if resize < max(size[1:]):
            resize = None
    channels = "grey_to_rgb" if card.modality == "mammogram" else "rgb"
    channels = "grey" if size[0] == 1 else channels
    try:
        return PreprocessSpec(
            input_size=size,
            mean=card.mean,
            std=card.std,
            resize=resize,
            crop=crop,
            channels=channels,
            pixel_size=None,
            pixel_unit="mm" if card.modality == "mammogram" else "um",
            stain_method=card.stain_method,
            stain_target=card.stain_target,
        )
    except PreprocessSpecError as error:
        raise ModelCardError(f"cannot derive 'preprocess' from this card: {error}") from error


def _expect(name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        wanted = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ModelCardError(
            f"card field {name!r} must be {wanted}, got {type(value).__name__} ({value!r})"
        )
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ModelCardError(f"card field {name!r} must be one of {allowed}, got {value!r}")


def _str_tuple(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ModelCardError(f"card field {name!r} must be a list of strings, got {value!r}")
    for item in value:
        _expect(name, item, str)
    return tuple(value)


def _number_tuple(name: str, value: Any, kind: type) -> tuple:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ModelCardError(f"card field {name!r} must be a list of numbers, got {value!r}")
    out = []
    for item in value:
        _expect(name, item, (int, float) if kind is float else int)
        out.append(kind(item))
    return tuple(out)
