"""``run_recipe``: data → splits → training per fold → honest evaluation → run folder → registry.

The run folder holds ``recipe.yaml`` (as run, overrides applied), ``metrics.json``, PNG plots,
and one sub-folder per fold with its resumable checkpoint and chosen weights. A fold that
finished is not retrained on ``--resume``; an interrupted one continues from its last epoch.
Images are decoded and fitted to the recipe's preprocessing spec once
(:mod:`~napari_pathreview.training.run_data`); each fold fits its stain target on its own
training part and evaluates with its own spec (:mod:`~napari_pathreview.training.preparation`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import yaml

from napari_pathreview.errors import PathReviewError
from napari_pathreview.models.factory import require_architecture
from napari_pathreview.training import datasets as ds
from napari_pathreview.training.build import (
    build_model,
    require_buildable,
    require_cam_grid,
    require_recipe_weights,
)
from napari_pathreview.training.evaluation import evaluate_fold, summarize_run
from napari_pathreview.training.losses import balanced_class_weights
from napari_pathreview.training.preparation import fit_fold_stain, fold_spec, stain_images
from napari_pathreview.training.recipe import Recipe, RecipeError, load_recipe, read_recipe_yaml
from napari_pathreview.training.registration import register_run
from napari_pathreview.training.results import (
    RECIPE_FILE,
    RUN_LOCK_FILE,
    FoldResult,
    RunResult,
    fold_dir,
    read_fold,
)
from napari_pathreview.training.run_data import RunData, discover, prepare_data, with_reviews_source
from napari_pathreview.training.splits import record_splits
from napari_pathreview.training.trainer import Trainer, seed_everything

log = logging.getLogger(__name__)

TrainResult = RunResult
"""The name ``run_recipe``'s result had before results were typed (kept for callers)."""

__all__ = ["RunResult", "TrainResult", "build_model", "run_recipe"]


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
    """The recipe's device through the one resolver; under torchrun, this rank's GPU."""
    import torch

    from napari_pathreview.inference.device import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and distributed:
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    return device


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


def _load(recipe, overrides, out_dir, resume, rescore: bool = False) -> tuple[Recipe, Path]:
    """The recipe and run folder: a fresh folder, or the resumed run's own saved recipe.

    What the run needs is checked first, so a typo, an absent device or absent pretrained
    weights cost no run folder and no decoding.
    """
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / RECIPE_FILE
        if not saved.is_file():
            raise RecipeError(f"{run_dir} is not a run folder (no recipe.yaml); cannot resume")
        parsed = load_recipe(read_recipe_yaml(saved), overrides)
        finished = (run_dir / "metrics.json").is_file()  # its folds load their own weights
        _check_needs(parsed, weights=not (rescore or finished))
        return parsed, run_dir
    if recipe is None:
        raise RecipeError("give a recipe file (or --resume RUN_DIR)")
    parsed = load_recipe(recipe, overrides)
    _check_needs(parsed, weights=not rescore)
    return parsed, _shared_run_dir(parsed, out_dir)


def _check_needs(recipe: Recipe, weights: bool) -> None:
    """The device, the architecture, its kwargs, its CAM grid for ``eval.cam_iou`` and
    (``weights``) the pretrained weights, in seconds."""
    _device(recipe.device, False)
    require_architecture(recipe.model.architecture)
    require_cam_grid(recipe, require_buildable(recipe))
    if weights:
        require_recipe_weights(recipe)


# what --rescore may change: it re-reads saved fold models, so only how they are scored
RESCORE_KEYS = (
    "lesion.bilateral",
    "lesion.map_threshold",
    "eval.bootstrap",
    "eval.tta",
    "eval.cam_iou",
    "eval.cam_methods",
)


# what a plain --resume may change: where and how fast it runs, the CIs it computes over the
# saved test predictions, and what it registers; never how the unfinished folds train
RESUME_KEYS = (
    "device",
    "optim.num_workers",
    "eval.bootstrap",
    "register.enabled",
    "register.name",
    "register.description",
)


def _check_resume_overrides(overrides: Sequence[str], rescore: bool) -> None:
    """Refuse ``--set`` of a training setting with ``--resume``: the finished folds were
    trained (a rescore: every fold) without it, and the run folder's recipe.yaml, which the
    card copies, would then describe models it does not hold."""
    allowed = RESCORE_KEYS if rescore else RESUME_KEYS
    for assignment in overrides:
        key = assignment.split("=", 1)[0].strip()
        if key in allowed:
            continue
        if rescore:
            raise RecipeError(
                f"--rescore --set {key}: a rescore re-reads the saved fold models and trains "
                f"nothing; only {', '.join(RESCORE_KEYS)} can change"
            )
        raise RecipeError(
            f"--resume --set {key}: the run's finished folds were trained without it, and its "
            f"recipe.yaml would describe models it does not hold; only {', '.join(RESUME_KEYS)} "
            "can change on a resume (start a new run to train otherwise)"
        )


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
    rescore: bool = False,
) -> RunResult:
    """Train, evaluate and register as a recipe says.

    Args:
        recipe: YAML path or dict (None with ``resume``).
        overrides: ``key.path=value`` strings (``--set``).
        out_dir: parent of the run folder (default ``$PATHREVIEW_HOME/runs``).
        resume: an existing run folder to continue.
        progress: called with one dict per finished epoch (fold, epoch, losses, metrics).
        from_reviews: train on the review store's export instead ("" = default store,
            else a SQLite path or database URL).
        rescore: with ``resume``, score a lesion-aware run's finished folds again from their
            saved models and embeddings, by the current scoring code (no training).
    """
    distributed, rank = _distributed()
    if resume is not None:
        _check_resume_overrides(overrides, rescore)
    parsed, run_dir = _load(recipe, overrides, out_dir, resume, rescore)
    if from_reviews is not None:
        parsed = with_reviews_source(parsed, from_reviews)
    if rescore and (resume is None or not parsed.lesion.enabled):
        raise RecipeError(
            "--rescore re-reads a finished lesion-aware run: give --resume RUN_DIR of a run "
            "whose recipe has lesion.enabled"
        )
    with _sole_writer(run_dir, rank):
        try:
            return _run_in(
                parsed, run_dir, resume, progress, from_reviews, rescore, distributed, rank
            )
        except PathReviewError:
            if resume is None and rank == 0:
                _discard_if_untrained(run_dir)
            raise


# what a run writes before it trains: a run folder holding only these was refused at the start
SETUP_FILES = (RECIPE_FILE, RUN_LOCK_FILE, "splits.json", "reviews_manifest.csv")


def _discard_if_untrained(run_dir: Path) -> None:
    """Remove a fresh run folder refused before any training (a missing image, an ROI outside
    its image): it holds nothing to resume, and each refusal would leave another behind."""
    import shutil

    made = [p for p in run_dir.rglob("*") if p.is_file() and p.name not in SETUP_FILES]
    if not made:
        shutil.rmtree(run_dir, ignore_errors=True)


@contextmanager
def _sole_writer(run_dir: Path, rank: int) -> Iterator[None]:
    """Hold the run folder's lock while this process writes it (rank 0 for all DDP ranks).

    A second ``--resume`` (or ``--rescore``) of a run that is still training, from another
    terminal or a requeued job, would interleave checkpoints with it and register the run
    twice. The lock is the operating system's, so a killed run leaves it free.
    """
    if rank != 0:
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / RUN_LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RecipeError(
            f"{run_dir} is in use by another `pathreview train` still running on it; let it "
            "finish, or stop it, before resuming or rescoring this run"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _run_in(
    parsed: Recipe,
    run_dir: Path,
    resume: str | Path | None,
    progress: Callable[[dict], None] | None,
    from_reviews: str | None,
    rescore: bool,
    distributed: bool,
    rank: int,
) -> RunResult:
    """The run itself, in a run folder this process holds (see :func:`run_recipe`)."""
    previous = _registered_before(run_dir) if resume is not None else None
    if rank == 0:
        (run_dir / RECIPE_FILE).write_text(yaml.safe_dump(parsed.to_dict(), sort_keys=False))
    seed_everything(parsed.seed, parsed.deterministic)
    if parsed.lesion.enabled:  # ROI patches + MIL pooling (issue 14)
        from napari_pathreview.training.lesion import run_lesion

        samples = discover(parsed, run_dir, from_reviews)
        device = _device(parsed.device, False)
        metrics, registered = run_lesion(
            parsed, samples, run_dir, device, progress, previous, rescore
        )
        return RunResult(run_dir, metrics, registered)
    data = prepare_data(parsed, run_dir, from_reviews)
    if rank == 0:  # a resumed run's data must still split as its finished folds did
        record_splits(data.plan, data.samples, run_dir / "splits.json")
    device = _device(parsed.device, distributed)
    folds = [
        _run_fold(parsed, data, i, run_dir, device, distributed, progress)
        for i in range(len(data.plan.folds))
    ]
    metrics = summarize_run(parsed, data, folds, run_dir, write=rank == 0)
    registered = previous
    if registered is not None:
        log.info("this run was already registered as %s; not registering it again", registered)
        metrics["registered"] = registered
    elif rank == 0 and parsed.register.enabled:
        registered = register_run(parsed, data, folds, metrics, run_dir)
        metrics["registered"] = registered
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if distributed:
        import torch

        torch.distributed.barrier()
    return RunResult(run_dir, metrics, registered, tuple(folds))


def _registered_before(run_dir: Path) -> str | None:
    """The ``name@version`` a finished run registered (its metrics.json says), else None.

    Resuming a finished run must not put a duplicate version into the registry.
    """
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        registered = json.loads(path.read_text(encoding="utf-8")).get("registered")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return registered if isinstance(registered, str) and registered else None


def _fold_datasets(data: RunData, index: int, prepared: list) -> dict[str, ds.ImageDataset]:
    """The fold's train / val / test datasets over its (stained) canvases."""
    fold = data.plan.folds[index]
    weights = [s.weight for s in data.samples]
    out = {}
    for name in ("train", "val", "test"):
        idx = [int(i) for i in getattr(fold, name)]
        out[name] = ds.ImageDataset(
            [prepared[i] for i in idx], data.labels[idx], [weights[i] for i in idx]
        )
    return out


def _run_fold(
    recipe: Recipe, data: RunData, index: int, run_dir: Path, device, distributed, progress
) -> FoldResult:
    """Train (or finish, or reload) one fold and evaluate it."""
    done = read_fold(run_dir, index)
    if done is not None:
        log.info("fold %d already finished; reusing %s", index, fold_dir(run_dir, index))
        return done
    fold_dir(run_dir, index).mkdir(parents=True, exist_ok=True)
    train_idx = data.plan.folds[index].train
    stain_target = fit_fold_stain(recipe, data.prepared, train_idx)
    sets = _fold_datasets(data, index, stain_images(data.prepared, stain_target))
    class_weights = recipe.loss.class_weights
    if class_weights == "balanced":
        class_weights = balanced_class_weights(data.labels[list(train_idx)], len(data.classes))
    model = build_model(recipe, len(data.classes))
    spec = fold_spec(data.spec, model, recipe.data.stain, stain_target)

    def report(entry: dict) -> None:
        if progress is not None:
            progress({"fold": index, "folds": len(data.plan.folds), **entry})

    trainer = Trainer(
        recipe,
        model,
        sets["train"],
        sets["val"],
        len(data.classes),
        fold_dir(run_dir, index),
        device,
        class_weights,
        report,
        distributed,
        preprocess=spec,
    )
    trainer.resume()
    fit = trainer.fit()
    return evaluate_fold(
        recipe,
        data,
        index,
        model,
        fit,
        sets["val"],
        sets["test"],
        spec,
        run_dir,
        device,
        write=trainer.rank == 0,
    )
