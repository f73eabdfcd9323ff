"""``run_recipe``: data → splits → training per fold → honest evaluation → run folder → registry.

The run folder holds ``recipe.yaml`` (as run, overrides applied), ``metrics.json``, PNG plots,
and one sub-folder per fold with its resumable checkpoint and chosen weights. A fold that
finished is not retrained on ``--resume``; an interrupted one continues from its last epoch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from napari_pathreview.training import datasets as ds
from napari_pathreview.training.evaluation import evaluate_fold, summarize_run
from napari_pathreview.training.recipe import Recipe, RecipeError, load_recipe, resolve_path
from napari_pathreview.training.splits import SplitPlan, make_splits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where a run went and what it measured."""

    run_dir: Path
    metrics: dict
    registered: str | None


@dataclass(frozen=True)
class RunData:
    """Everything folds share: samples, class order, cached pixels, split plan, stain target."""

    samples: list
    classes: tuple
    labels: np.ndarray
    prepared: list
    plan: SplitPlan
    stain_target: dict | None


def _distributed() -> tuple[bool, int]:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on GPUs)."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False, 0
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True, torch.distributed.get_rank()


def _device(name: str, distributed: bool):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and distributed:
        name = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return torch.device(name)


def discover(recipe: Recipe, workdir: Path, reviews_db: str | None = None) -> list:
    """The recipe's samples (source, task, magnification, subset), before QC."""
    data = recipe.data
    if reviews_db is not None or data.source == "reviews":
        db = reviews_db or (data.root or None)
        samples = ds.from_reviews(db, workdir, data.disagreement_weight)
    elif data.source == "csv":
        samples = ds.from_csv(resolve_path(recipe, data.root), data.label_column)
    elif data.source == "folder":
        samples = ds.from_folder(resolve_path(recipe, data.root))
    elif data.source == "breakhis":
        samples = ds.from_breakhis(resolve_path(recipe, data.root), data.task, data.magnification)
    else:
        samples = ds.from_mias(resolve_path(recipe, data.root))
    if not samples:
        raise ds.DatasetError(f"no labelled images for recipe {recipe.name!r} ({data.source})")
    return ds.stratified_subset(samples, data.subset, recipe.seed)


def _qc_filter(recipe: Recipe, samples: list, prepared: list) -> tuple[list, list]:
    """Drop images failing the preprocessing core's quality check (seed 001's blur/tissue rule)."""
    from napari_pathreview.stain import QCConfig, assess_quality

    kwargs = {}
    if recipe.data.qc_blur_threshold is not None:
        kwargs["blur_threshold"] = recipe.data.qc_blur_threshold
    if recipe.data.qc_tissue_fraction is not None:
        kwargs["min_tissue_fraction"] = recipe.data.qc_tissue_fraction
    config = QCConfig(**kwargs)
    keep = [i for i, p in enumerate(prepared) if assess_quality(p.pixels, config).passed]
    log.info("QC kept %d of %d images", len(keep), len(samples))
    if not keep:
        raise ds.DatasetError("every image failed QC; relax data.qc_* or disable data.qc")
    return [samples[i] for i in keep], [prepared[i] for i in keep]


def _stain(recipe: Recipe, prepared: list, train_idx: Sequence[int]) -> tuple[list, dict | None]:
    """Fit the recipe's stain normaliser (preset, image, or training images) and apply it to all."""
    from napari_pathreview.stain import (
        REINHARD_BREAKHIS_PRESET,
        get_normalizer,
        normalizer_from_dict,
    )

    method, target = recipe.data.stain, recipe.data.stain_target
    if method == "none":
        return prepared, None
    if target == "breakhis_preset":
        normalizer = normalizer_from_dict(dict(REINHARD_BREAKHIS_PRESET))
    elif target:
        from napari_pathreview.io import load_image, to_rgb_uint8

        image = to_rgb_uint8(load_image(resolve_path(recipe, target)).data)
        normalizer = get_normalizer(method).fit(image)
    else:
        normalizer = get_normalizer(method).fit([prepared[i].pixels for i in train_idx[:32]])
    out = [replace(p, pixels=normalizer.transform(p.pixels)) for p in prepared]
    return out, normalizer.to_dict()


def prepare_data(recipe: Recipe, workdir: Path, reviews_db: str | None = None) -> RunData:
    """Discover, decode (once), QC, split by patient, stain-normalise."""
    samples = discover(recipe, workdir, reviews_db)
    size = recipe.data.resize or max(recipe.data.image_size, round(recipe.data.image_size * 8 / 7))
    prepared = ds.prepare_all(samples, size, recipe.data.crop)
    if recipe.data.qc:
        samples, prepared = _qc_filter(recipe, samples, prepared)
    classes = ds.class_names(samples, recipe.data.task)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.asarray([index[s.label] for s in samples])
    if len(set(labels.tolist())) < 2:
        raise ds.DatasetError(f"only one class ({classes}) in the data: nothing to learn")
    if recipe.split.group_by == "patient_stem":
        groups = [s.extra.get("patient_stem", s.patient_id) for s in samples]
    else:
        groups = [s.patient_id for s in samples]
    cfg = recipe.split
    plan = make_splits(
        labels, groups, cfg.protocol, cfg.val_fraction, cfg.test_fraction, cfg.folds, recipe.seed
    )
    prepared, stain_target = _stain(recipe, prepared, plan.folds[0].train)
    return RunData(samples, classes, labels, prepared, plan, stain_target)


def _start_run_dir(recipe: Recipe, out_dir: str | Path | None) -> Path:
    from napari_pathreview.home import pathreview_home

    root = Path(out_dir) if out_dir else pathreview_home() / "runs"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{recipe.name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{recipe.name}-{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def _load(recipe, overrides, out_dir, resume) -> tuple[Recipe, Path]:
    """The recipe and run folder: a fresh folder, or the resumed run's own saved recipe."""
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / "recipe.yaml"
        if not saved.is_file():
            raise RecipeError(f"{run_dir} is not a run folder (no recipe.yaml); cannot resume")
        return load_recipe(yaml.safe_load(saved.read_text()), overrides), run_dir
    if recipe is None:
        raise RecipeError("give a recipe file (or --resume RUN_DIR)")
    parsed = load_recipe(recipe, overrides)
    return parsed, _shared_run_dir(parsed, out_dir)


def _shared_run_dir(recipe: Recipe, out_dir) -> Path:
    """Rank 0 creates the run folder; under torchrun every other rank receives its path."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return _start_run_dir(recipe, out_dir)
    holder = [str(_start_run_dir(recipe, out_dir)) if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(holder, src=0)
    return Path(holder[0])


def run_recipe(
    recipe: str | Path | dict | None,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    from_reviews: str | None = None,
) -> TrainResult:
    """Train, evaluate and register as a recipe says.

    Args:
        recipe: YAML path or dict (None with ``resume``).
        overrides: ``key.path=value`` strings (``--set``).
        out_dir: parent of the run folder (default ``$PATHREVIEW_HOME/runs``).
        resume: an existing run folder to continue.
        progress: called with one dict per finished epoch (fold, epoch, losses, metrics).
        from_reviews: train on the review store's export instead ("" = default store,
            else a SQLite path or database URL).
    """
    distributed, rank = _distributed()
    parsed, run_dir = _load(recipe, overrides, out_dir, resume)
    if rank == 0:
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(parsed.to_dict(), sort_keys=False))
    from napari_pathreview.training.trainer import seed_everything

    seed_everything(parsed.seed, parsed.deterministic)
    data = prepare_data(parsed, run_dir, from_reviews)
    if rank == 0:
        _write_splits(data, run_dir / "splits.json")
    device = _device(parsed.device, distributed)
    folds = [
        _run_fold(parsed, data, i, run_dir, device, distributed, progress)
        for i in range(len(data.plan.folds))
    ]
    metrics = summarize_run(parsed, data, folds, run_dir, write=rank == 0)
    registered = None
    if rank == 0 and parsed.register.enabled:
        from napari_pathreview.training.registration import register_run

        registered = register_run(parsed, data, folds, metrics, run_dir)
        metrics["registered"] = registered
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if distributed:
        import torch

        torch.distributed.barrier()
    return TrainResult(run_dir, metrics, registered)


def _write_splits(data: RunData, path: Path) -> None:
    """Which image (and patient) went where, per fold: the audit trail of the split protocol."""
    folds = []
    for fold in data.plan.folds:
        rows = {
            name: [data.samples[i] for i in getattr(fold, name)]
            for name in ("train", "val", "test")
        }
        folds.append(
            {
                name: [{"path": s.path, "patient_id": s.patient_id, "label": s.label} for s in part]
                for name, part in rows.items()
            }
        )
    payload = {
        "protocol": data.plan.protocol,
        "leaky": data.plan.leaky,
        "description": data.plan.description,
        "folds": folds,
    }
    path.write_text(json.dumps(payload, indent=1))


def build_model(recipe: Recipe, num_classes: int):
    """``models.create_model`` (every timm name works there too)."""
    from napari_pathreview.models import create_model

    return create_model(
        recipe.model.architecture,
        num_classes,
        pretrained=recipe.model.pretrained,
        **recipe.model.kwargs,
    )


def _run_fold(
    recipe: Recipe, data: RunData, index: int, run_dir: Path, device, distributed, progress
) -> dict:
    """Train (or finish, or reload) one fold and evaluate it."""
    from napari_pathreview.training.losses import balanced_class_weights
    from napari_pathreview.training.trainer import Trainer

    fold = data.plan.folds[index]
    fold_dir = run_dir / f"fold{index}"
    done = fold_dir / "fold.json"
    if done.is_file():
        log.info("fold %d already finished; reusing %s", index, done)
        return json.loads(done.read_text())
    fold_dir.mkdir(parents=True, exist_ok=True)
    weights = [s.weight for s in data.samples]
    part = {name: [int(i) for i in getattr(fold, name)] for name in ("train", "val", "test")}

    def subset(name: str) -> ds.ImageDataset:
        idx = part[name]
        return ds.ImageDataset(
            [data.prepared[i] for i in idx], data.labels[idx], [weights[i] for i in idx]
        )

    class_weights = recipe.loss.class_weights
    if class_weights == "balanced":
        class_weights = balanced_class_weights(data.labels[part["train"]], len(data.classes))
    model = build_model(recipe, len(data.classes))

    def report(entry: dict) -> None:
        if progress is not None:
            progress({"fold": index, "folds": len(data.plan.folds), **entry})

    trainer = Trainer(
        recipe,
        model,
        subset("train"),
        subset("val"),
        len(data.classes),
        fold_dir,
        device,
        class_weights,
        report,
        distributed,
    )
    trainer.resume()
    fit = trainer.fit()
    return evaluate_fold(
        recipe, data, index, model, fit, subset, fold_dir, device, write=trainer.rank == 0
    )
