"""The model registry: ``<root>/<name>/<version>/{card.yaml, weights.safetensors}``.

Training registers, the plugin and the CLI list and load. Writes are atomic (a temporary folder
renamed into place) and versions are allocated under a file lock, so two trainings finishing at
once get "3" and "4" rather than a half-written "3". Weights are safetensors only and are checked
against the card's SHA-256 on every load.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from napari_pathreview.errors import ModelNotFoundError, PathReviewError, WeightsError
from napari_pathreview.models.pretrained import readable_as_umask
from napari_pathreview.registry.card import (
    ModelCard,
    ModelCardError,
    validate_name,
    validate_version,
)
from napari_pathreview.registry.hygiene import remove_stale_staging
from napari_pathreview.registry.layout import (  # noqa: F401  (CARD_FILE, read_card: public here too)
    CARD_FILE,
    LOCK_FILE,
    TMP_DIR,
    WEIGHTS_FILE,
    read_card,
    sha256_file,
    verified_weights,
    write_card,
)

#: create_model arguments that describe where weights came from, not the architecture.
WEIGHT_SOURCE_KWARGS: tuple[str, ...] = ("pretrained", "pretrained_path")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    """One row of ``ModelRegistry.list()``: what a user picks a model by."""

    name: str
    version: str
    task: str
    classes: tuple[str, ...]
    modality: str
    architecture: str
    metrics: dict
    created_at: str
    description: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ModelRegistry:
    """Registered models under ``root`` (default ``pathreview_home()/"models"``).

    Args:
        root: Registry folder; created by the first model written to it (a refused import
            leaves no empty registry behind).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from napari_pathreview.home import pathreview_home

            root = pathreview_home() / "models"
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered model names, sorted."""
        if not self.root.exists():  # nothing written yet
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and self._versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """Versions of ``name``, oldest first (ModelNotFoundError if none)."""
        found = self._versions(validate_name(name))
        if not found:
            raise ModelNotFoundError(self._not_found_message(name))
        return found

    def _versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        numbers = [int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir()]
        return [str(n) for n in sorted(numbers)]

    def _not_found_message(self, name: str, version: str | None = None) -> str:
        what = f"{name}@{version}" if version else name
        available = self.names()
        if version and name in available:
            hint = f"versions of {name}: {', '.join(self._versions(name))}"
        else:
            hint = f"registered: {', '.join(available)}" if available else "the registry is empty"
        return (
            f"no model {what!r} in {self.root} ({hint}). Train one with `pathreview train`, "
            "import one with `pathreview models import`, or run `pathreview demo`."
        )

    def folder(self, name: str, version: str | None = None) -> Path:
        """The folder of ``name@version`` (latest when version is None)."""
        versions = self.versions(name)
        if version is None or version == "latest":
            return self.root / name / versions[-1]
        version = validate_version(version)
        if version not in versions:
            raise ModelNotFoundError(self._not_found_message(name, version))
        return self.root / name / version

    def card(self, name: str, version: str | None = None) -> ModelCard:
        """The card of ``name@version`` (latest when version is None)."""
        return self._read_registered(self.folder(name, version))

    def _read_registered(self, folder: Path) -> ModelCard:
        """The card in the registry folder ``<root>/<name>/<version>``, which must name it.

        A card that names another model (a version folder copied by hand) would be listed
        under its own name and then not be found by it.

        Raises:
            ModelCardError: unreadable, or it names another name or version than its folder.
        """
        card = read_card(folder)
        if (card.name, card.version) != (folder.parent.name, folder.name):
            raise ModelCardError(
                f"{folder / CARD_FILE} names {card.ref} but lies in the folder of "
                f"{folder.parent.name}@{folder.name}; was it copied by hand? Put it back, or "
                "add a model with `pathreview models import FOLDER`"
            )
        return card

    def list(self) -> list[ModelSummary]:
        """Every registered version, by name then version; unreadable cards are logged, skipped."""
        rows: list[ModelSummary] = []
        for name in self.names():
            for version in self._versions(name):
                try:
                    card = self._read_registered(self.root / name / version)
                except (ModelCardError, OSError) as error:
                    logger.warning("skipping %s@%s: %s", name, version, error)
                    continue
                rows.append(summary_of(card))
        return rows

    def load(self, name: str, version: str | None = None, device: str = "cpu"):
        """Rebuild ``name@version`` from its card, verify and load its weights; eval mode.

        ``device`` is one of ``inference.device.DEVICES`` ("auto": CUDA, then MPS, then CPU),
        resolved by ``resolve_device`` (DeviceUnavailableError for an absent accelerator).
        The returned module has ``model.card``. Raises WeightsError if the file is missing,
        altered since registration (SHA-256 mismatch) or does not fit the architecture.
        """
        folder = self.folder(name, version)
        card = self._read_registered(folder)
        weights = verified_weights(folder, card)
        return build_from_card(card, weights, device)

    # -- writing -------------------------------------------------------------------------------
    def register(self, model: Any, card: ModelCard | Mapping[str, Any]) -> str:
        """Store ``model``'s weights with ``card`` as the next version of ``card.name``.

        Fields the architecture knows (input size, mean/std, CAM layers, architecture name and
        kwargs) default from the model. Returns the new version ("1", "2", ...).
        """
        import torch
        from safetensors.torch import save_model

        model = unwrap_model(model)
        fields = card.to_dict() if isinstance(card, ModelCard) else dict(card)
        fields = {k: v for k, v in fields.items() if _given(v)}
        defaults = defaults_from_model(model)
        if "preprocess" in fields:  # the card's spec says how the model is fed, not its defaults
            spec = fields["preprocess"]
            if isinstance(spec, Mapping):  # …but what it leaves out is the model's, not ImageNet's
                given = {k: defaults[k] for k in ("input_size", "mean", "std") if k in defaults}
                fields["preprocess"] = {**given, **spec}
            for key in ("input_size", "mean", "std"):
                defaults.pop(key, None)
        complete = {**defaults, **fields}
        for key in ("version", "weights_sha256", "created_at"):
            complete.pop(key, None)
        draft = ModelCard.from_dict(complete)  # validate before writing anything
        _check_classes(model, draft)
        made = self._missing_folders()
        staging = self._staging()
        try:
            with torch.no_grad():
                cpu_model = model if _on_cpu(model) else _cpu_copy(model)
                save_model(
                    cpu_model,
                    str(staging / WEIGHTS_FILE),
                    metadata={"format": "pt"},
                    force_contiguous=True,
                )
            readable_as_umask(staging / WEIGHTS_FILE)
            complete["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
            return self._commit(staging, complete)
        finally:
            self._discard(staging, made)

    def _staging(self) -> Path:
        """A new, empty ``.tmp/<uuid>`` (made again should a refused writer's clean-up remove
        the ``.tmp`` it was being made in)."""
        staging = self.root / TMP_DIR / uuid.uuid4().hex
        for attempt in range(3):
            try:
                staging.mkdir(parents=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return staging

    def _missing_folders(self) -> list[Path]:
        """The registry folders a write is about to make (``.tmp`` first, then the root)."""
        return [folder for folder in (self.root / TMP_DIR, self.root) if not folder.exists()]

    def _discard(self, staging: Path, made: list[Path]) -> None:
        """Remove ``staging`` (a no-op once committed) and, after a refused write, the folders
        it ``made``, each only while empty (another writer may have started in them), so a
        refused import leaves the registry as it found it."""
        if not staging.exists():
            return
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: in use by another writer
                return

    def _registered_as(self, fields: dict[str, Any]) -> str | None:
        """The version of ``fields["name"]`` whose card is ``fields`` (the same model), or None."""
        for version in self._versions(validate_name(fields["name"])):
            try:
                registered = self._read_registered(self.root / fields["name"] / version)
            except PathReviewError:  # a damaged version is not this model
                continue
            if _identity(registered) == fields:
                return version
        return None

    def _commit(self, staging: Path, fields: dict[str, Any]) -> str:
        """Allocate the next version under the lock, write the card, rename into place."""
        from filelock import FileLock

        name = validate_name(fields["name"])
        with FileLock(str(self.root / LOCK_FILE), timeout=120):
            remove_stale_staging(self.root / TMP_DIR, keep=staging)
            (self.root / name).mkdir(exist_ok=True)
            existing = self._versions(name)
            version = str(int(existing[-1]) + 1 if existing else 1)
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            card = ModelCard.from_dict({**fields, "version": version, "created_at": created})
            write_card(staging, card)
            os.rename(staging, self.root / name / version)
        logger.info("registered %s@%s in %s", name, version, self.root)
        return version

    def remove(self, name: str, version: str | None = None) -> list[str]:
        """Delete one version, or every version of ``name`` when version is None.

        Returns the removed versions. The folder is renamed away under the lock first, so a
        concurrent ``load`` sees the model either whole or gone.
        """
        from filelock import FileLock

        targets = self.versions(name) if version is None else [self.folder(name, version).name]
        with FileLock(str(self.root / LOCK_FILE), timeout=120):
            for target in targets:
                trash = self._staging()  # a non-empty .tmp: a refused writer leaves it be
                os.rename(self.root / name / target, trash / target)
                shutil.rmtree(trash)
            if not self._versions(name):
                shutil.rmtree(self.root / name, ignore_errors=True)
        return targets

    def export(
        self, name: str, version: str | None, dest: str | Path, overwrite: bool = False
    ) -> Path:
        """Write ``name@version`` to a folder or a ``.tar``/``.tar.gz`` archive; return its path.

        An existing archive file is replaced only with ``overwrite``; an existing folder never.
        """
        from napari_pathreview.registry.transfer import export_model

        folder = self.folder(name, version)
        card = self._read_registered(folder)
        verified_weights(folder, card)
        return export_model(folder, card, Path(dest), overwrite=overwrite)

    def import_model(self, path: str | Path) -> tuple[str, str]:
        """Import an exported folder or archive as the next version of its name.

        Returns (name, version). Pickles are refused; the weights must match the card's SHA-256.
        A model already registered under its name (same weights and card) is not copied again:
        its version is returned, so importing a colleague's archive twice lists it once.
        """
        from napari_pathreview.registry.transfer import check_model_source, unpack_model
        from napari_pathreview.registry.verify import verify_loadable

        check_model_source(Path(path))  # refused before the registry's folders are made
        made = self._missing_folders()
        staging = self._staging()
        try:
            try:
                card = unpack_model(Path(path), staging)
                verify_loadable(card, staging / WEIGHTS_FILE)  # before it enters the registry
            except PathReviewError as error:  # name the user's file, not the hidden staged copy
                error.args = (str(error).replace(str(staging), str(path)),)
                raise
            fields = _identity(card)
            same = self._registered_as(fields)
            if same is not None:
                logger.info("%s is already registered as %s@%s", path, card.name, same)
                return card.name, same
            version = self._commit(staging, fields)
            return card.name, version
        finally:
            self._discard(staging, made)


def _identity(card: ModelCard) -> dict[str, Any]:
    """What makes two registered models the same model: every card field (the weights' hash
    among them) but where and when it was registered."""
    return {k: v for k, v in card.to_dict().items() if k not in ("version", "created_at")}


def summary_of(card: ModelCard) -> ModelSummary:
    return ModelSummary(
        name=card.name,
        version=card.version,
        task=card.task,
        classes=card.classes,
        modality=card.modality,
        architecture=card.architecture,
        metrics=dict(card.metrics),
        created_at=card.created_at,
        description=card.description,
    )


def build_from_card(card: ModelCard, weights: Path, device: str = "cpu"):
    """``create_model`` from the card, load safetensors strictly, eval mode, ``model.card`` set."""
    from safetensors.torch import load_model

    from napari_pathreview.inference.device import resolve_device
    from napari_pathreview.models.factory import create_model

    kwargs = {k: v for k, v in card.architecture_kwargs.items() if k not in WEIGHT_SOURCE_KWARGS}
    try:
        model = create_model(card.architecture, card.num_classes, **kwargs)
    except TypeError as error:  # an architecture kwarg the network does not take
        raise ModelCardError(
            f"card of {card.ref}: architecture {card.architecture!r} refuses "
            f"architecture_kwargs {kwargs}: {error}"
        ) from error
    try:
        load_model(model, str(weights), strict=True, device="cpu")
    except RuntimeError as error:
        raise WeightsError(
            f"{weights} does not fit architecture {card.architecture!r} with {card.num_classes} "
            f"classes and kwargs {kwargs}: {str(error)[:300]}"
        ) from error
    model.card = card
    return model.to(resolve_device(device)).eval()


def defaults_from_model(model: Any) -> dict[str, Any]:
    """Card fields a model built by ``create_model`` can fill in itself."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return {}
    defaults: dict[str, Any] = {
        "architecture": spec.architecture,
        "input_size": list(spec.input_size),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "modality": spec.modality_hint,
    }
    kwargs = getattr(model, "architecture_kwargs", None)
    if kwargs:
        defaults["architecture_kwargs"] = {
            k: v for k, v in kwargs.items() if k not in WEIGHT_SOURCE_KWARGS
        }
    if hasattr(model, "cam_target_layer_names"):
        defaults["cam_target_layers"] = list(model.cam_target_layer_names())
    return defaults


def unwrap_model(model: Any) -> Any:
    """The PathReviewModel inside torch.compile, DDP or EMA wrappers; refuse anything else.

    Only models from ``create_model`` can be rebuilt from a card, so only they are registered.
    """
    from napari_pathreview.models.base import PathReviewModel

    for attribute in ("_orig_mod", "module", "_orig_mod"):  # compile(EMA(model)) and the like
        inner = getattr(model, attribute, None)
        if isinstance(inner, PathReviewModel) or hasattr(inner, "_orig_mod"):
            model = inner
    if not isinstance(model, PathReviewModel):
        raise ModelCardError(
            f"cannot register a {type(model).__name__}: build it with "
            "napari_pathreview.models.create_model(...) so the registry can rebuild it from "
            "its card"
        )
    return model


def _check_classes(model: Any, card: ModelCard) -> None:
    spec = model.spec
    if card.architecture != spec.architecture:
        raise ModelCardError(
            f"card says architecture {card.architecture!r} but the model is "
            f"{spec.architecture!r}; leave 'architecture' out to take the model's"
        )
    if spec.num_classes != card.num_classes:
        raise ModelCardError(
            f"card lists {card.num_classes} classes {card.classes} but the model has "
            f"{spec.num_classes} outputs; call model.reset_classifier or fix 'classes'"
        )


def _given(value: Any) -> bool:
    """False for the "not set" values of a draft card (None, "", empty containers)."""
    return value is not None and not (isinstance(value, (str, tuple, list, dict)) and not value)


def _on_cpu(model: Any) -> bool:
    return all(t.device.type == "cpu" for t in model.state_dict().values())


def _cpu_copy(model: Any) -> Any:
    import copy

    return copy.deepcopy(model).cpu()
