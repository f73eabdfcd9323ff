"""The training loop: phases, AMP, clipping, timm Mixup/CutMix and EMA, schedules, early stopping.

Resumability is designed in rather than bolted on: every epoch re-seeds all random number
generators from (seed, epoch), and the checkpoint written atomically after each epoch
holds everything else that evolves (weights, optimiser, scheduler, EMA, best/top-k
snapshots, early-stopping counters). Continuing from it therefore replays the same epochs
an uninterrupted run would have, and in deterministic mode ends with identical weights.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from napari_pathreview._atomic import atomic_path
from napari_pathreview.errors import WeightsError
from napari_pathreview.preprocessing import PreprocessSpec
from napari_pathreview.training.datasets import ImageDataset, eval_transform, train_transform
from napari_pathreview.training.losses import build_loss, weighted_mean
from napari_pathreview.training.metrics import SCALAR_METRICS, compute_metrics, selection_score
from napari_pathreview.training.phases import build_optimizer, configure_phase, phase_at
from napari_pathreview.training.recipe import Recipe

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "last.pt"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; in deterministic mode also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def atomic_save(obj: dict, path: Path) -> None:
    """Save through a temporary file moved over the old one (``_atomic``): a killed process
    never leaves a half-written checkpoint (no fsync: that guards against power loss, at
    seconds per epoch)."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict (snapshots must not alias live weights)."""
    module = getattr(module, "module", module)
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of state dicts (as timm's avg_checkpoints); integer buffers keep the first's."""
    out = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        else:
            out[key] = value.clone()
    return out


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    dataset: ImageDataset,
    batch_size: int,
    device: torch.device,
    tta: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (N×K) and labels over a dataset, merged over TTA views."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    probs, labels = [], []
    for x, y, _ in loader:
        x = x.to(device)
        if tta != "none":
            from napari_pathreview import tta as tta_module

            p = torch.softmax(model(tta_module.augment_batch(x, tta)).float(), dim=1)
            p = tta_module.merge_probabilities(p, tta)
        else:
            p = torch.softmax(model(x).float(), dim=1)
        probs.append(p.cpu().numpy())
        labels.append(y.numpy())
    if not probs:
        return np.zeros((0, 1)), np.zeros(0, dtype=int)
    return np.concatenate(probs), np.concatenate(labels)


def _drop_last(n_samples: int, batch_size: int, mixup: bool) -> bool:
    """Whether an epoch drops its short last batch: always under MixUp/CutMix (it mixes pairs
    within a batch), else only a batch of one image, which BatchNorm cannot train on
    ("Expected more than 1 value per channel"); never the only batch."""
    if n_samples <= batch_size:
        return False
    return mixup or n_samples % batch_size == 1


def _spec_of(model: nn.Module, image_size: int) -> PreprocessSpec:
    """A square input of ``image_size`` normalised as the model's own spec says."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return PreprocessSpec(input_size=(3, image_size, image_size))
    channels = spec.input_size[0]
    return PreprocessSpec(
        input_size=(channels, image_size, image_size),
        mean=spec.mean,
        std=spec.std,
        channels="grey" if channels == 1 else "rgb",
    )


@dataclass(frozen=True)
class FitResult:
    """What a finished (or early-stopped) fit leaves behind; states are CPU copies."""

    history: list
    best_epoch: int
    best_score: float
    best_state: dict
    final_state: dict
    ema_state: dict | None
    topk_state: dict | None
    stopped_early: bool


class Trainer:
    """Trains one model on one train/val split as a recipe says."""

    def __init__(
        self,
        recipe: Recipe,
        model: nn.Module,
        train_set: ImageDataset,
        val_set: ImageDataset,
        num_classes: int,
        workdir: Path,
        device: torch.device,
        class_weights: list[float] | None = None,
        progress: Callable[[dict], None] | None = None,
        distributed: bool = False,
        preprocess: PreprocessSpec | None = None,
    ):
        self.recipe = recipe
        self.model = model.to(device)
        self.train_set, self.val_set = train_set, val_set
        self.num_classes = num_classes
        self.workdir = Path(workdir)
        self.device = device
        self.progress = progress
        self.distributed = distributed
        self.rank = torch.distributed.get_rank() if distributed else 0
        self.loss_fn = build_loss(
            recipe.loss.name,
            num_classes,
            recipe.loss.label_smoothing,
            class_weights,
            recipe.loss.focal_gamma,
            recipe.loss.dice_weight,
        ).to(device)
        self.preprocess = preprocess or _spec_of(model, recipe.data.image_size)
        self.ema = None
        if recipe.ema.enabled:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=recipe.ema.decay)
        self.net = self.model
        if distributed:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        amp_cuda = recipe.optim.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_cuda)
        self.state = {
            "epoch": 0,
            "history": [],
            "best_score": -math.inf,
            "best_epoch": -1,
            "best_state": None,
            "topk": [],
            "bad_epochs": 0,
            "stopped_early": False,
            "step": 0,
        }
        self.optimizer = self.scheduler = self.mixup = None
        self._phase_index = -1

    # ----- phases -------------------------------------------------------------------------
    def _enter_phase(self, index: int) -> None:
        recipe = self.recipe
        phase = recipe.phases[index]
        groups = configure_phase(self.model, phase, recipe.optim.lr, recipe.optim.weight_decay)
        self.optimizer = build_optimizer(
            recipe.optim.optimizer, groups, phase.lr or recipe.optim.lr, recipe.optim.momentum
        )
        self.scheduler = self._build_scheduler(phase.epochs)
        augment = phase.augment or recipe.augment
        self.train_set.transform = train_transform(augment, self.preprocess)
        self.mixup = None
        if augment.mixup > 0 or augment.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=augment.mixup,
                cutmix_alpha=augment.cutmix,
                prob=augment.mix_prob,
                label_smoothing=recipe.loss.label_smoothing,
                num_classes=self.num_classes,
            )
        self._phase_index = index
        log.info("phase %d (%s): training %s", index, phase.name, [g["name"] for g in groups])

    def _build_scheduler(self, epochs: int):
        cfg = self.recipe.schedule
        if cfg.name == "cosine":
            from timm.scheduler import CosineLRScheduler

            return CosineLRScheduler(
                self.optimizer,
                t_initial=max(1, epochs),
                lr_min=cfg.min_lr,
                warmup_t=cfg.warmup_epochs,
                warmup_lr_init=cfg.min_lr,
                warmup_prefix=True,
            )
        if cfg.name == "step":
            from timm.scheduler import StepLRScheduler

            return StepLRScheduler(
                self.optimizer,
                decay_t=cfg.step_size,
                decay_rate=cfg.gamma,
                warmup_t=cfg.warmup_epochs,
                warmup_lr_init=cfg.min_lr,
            )
        if cfg.name == "plateau":
            mode = "min" if cfg.plateau_metric in ("loss", "ece") else "max"
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode=mode,
                factor=cfg.plateau_factor,
                patience=cfg.plateau_patience,
                min_lr=cfg.min_lr,
            )
        return None

    def _step_scheduler(self, epoch_in_phase: int, val: dict) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = val.get(self.recipe.schedule.plateau_metric)
            if value is not None and math.isfinite(value):
                self.scheduler.step(value)
        else:
            self.scheduler.step(epoch_in_phase + 1)

    # ----- checkpoints --------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.workdir / CHECKPOINT_NAME

    def _save(self) -> None:
        if self.rank != 0:
            return
        payload = dict(self.state)
        payload.update(
            model=cpu_state(self.model),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler else None,
            ema=cpu_state(self.ema.module) if self.ema else None,
            scaler=self.scaler.state_dict(),
            phase_index=self._phase_index,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        atomic_save(payload, self.checkpoint_path())

    def resume(self, path: Path | None = None) -> bool:
        """Load the last checkpoint if one exists; returns whether training continues from it."""
        path = path or self.checkpoint_path()
        if not path.is_file():
            return False
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
            raise WeightsError(
                f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: "
                f"{str(error)[:200]}); delete it to restart this fold from scratch, or resume "
                "from a copy of the run folder that has an intact checkpoint"
            ) from error
        self.model.load_state_dict(payload["model"])
        if self.ema is not None and payload.get("ema") is not None:
            self.ema.module.load_state_dict(payload["ema"])
        if payload["epoch"] < self.recipe.total_epochs and not payload["stopped_early"]:
            index, _ = phase_at(self.recipe.phases, payload["epoch"])
            self._enter_phase(index)
            if payload["phase_index"] == index:
                self.optimizer.load_state_dict(payload["optimizer"])
                if self.scheduler is not None and payload["scheduler"] is not None:
                    self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.state = {k: payload[k] for k in self.state}
        log.info("resumed from %s after epoch %d", path, payload["epoch"])
        return True

    # ----- the loop -----------------------------------------------------------------------
    def _loader(self, epoch: int) -> DataLoader:
        recipe = self.recipe
        generator = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)
        sampler, shuffle = None, True
        if self.distributed:
            sampler = torch.utils.data.DistributedSampler(
                self.train_set, shuffle=True, seed=recipe.seed
            )
            sampler.set_epoch(epoch)
            shuffle = False
        elif recipe.optim.sampler == "weighted":
            labels = np.asarray(self.train_set.labels)
            counts = np.bincount(labels, minlength=self.num_classes).astype(float)
            weights = (1.0 / np.maximum(counts, 1))[labels]
            sampler = torch.utils.data.WeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double),
                len(labels),
                replacement=True,
                generator=generator,
            )
            shuffle = False
        drop_last = _drop_last(
            len(sampler) if sampler is not None else len(self.train_set),
            recipe.optim.batch_size,
            self.mixup is not None,
        )
        return DataLoader(
            self.train_set,
            batch_size=recipe.optim.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            generator=generator if shuffle else None,
            num_workers=recipe.optim.num_workers,
            drop_last=drop_last,
        )

    def _train_epoch(self, epoch: int) -> float:
        from tqdm.auto import tqdm

        self.net.train()
        amp = self.recipe.optim.amp
        amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        total, count = 0.0, 0
        batches = tqdm(
            self._loader(epoch),
            desc=f"epoch {epoch + 1}",
            leave=False,
            disable=None if self.rank == 0 else True,
        )
        for x, y, w in batches:
            x, y, w = x.to(self.device), y.to(self.device), w.to(self.device).float()
            target = y
            if self.mixup is not None and len(x) % 2 == 0 and len(x) > 1:
                x, target = self.mixup(x, y)
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp):
                logits = self.net(x)
            loss = weighted_mean(self.loss_fn(logits.float(), target), w)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.recipe.optim.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state["step"] += 1
            if self.ema is not None:
                self.ema.update(self.model, step=self.state["step"])
            total += float(loss.detach()) * len(x)
            count += len(x)
        return total / max(count, 1)

    def _eval_model(self) -> nn.Module:
        if self.ema is not None and self.recipe.register.select == "ema":
            return self.ema.module
        return self.model

    def _validate(self) -> dict:
        self.val_set.transform = eval_transform(self.preprocess)
        probs, labels = predict_probabilities(
            self._eval_model(), self.val_set, self.recipe.optim.batch_size, self.device
        )
        if len(labels) == 0:
            return {}
        result = compute_metrics(labels, probs, with_confusion=False)
        logp = np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))
        result["loss"] = float(-logp.mean())
        return result

    def _score(self, val: dict) -> float:
        cfg = self.recipe.early_stopping
        return selection_score(val, cfg.metric, cfg.mode)

    def _track(self, epoch: int, val: dict) -> None:
        score = self._score(val)
        state = self.state
        if score > state["best_score"]:
            state.update(
                best_score=score,
                best_epoch=epoch,
                bad_epochs=0,
                best_state=cpu_state(self._eval_model()),
            )
        else:
            state["bad_epochs"] += 1
        if self.recipe.register.select == "topk":
            state["topk"].append({"score": score, "epoch": epoch, "state": cpu_state(self.model)})
            state["topk"].sort(key=lambda item: (-item["score"], item["epoch"]))
            del state["topk"][self.recipe.register.topk :]
        patience = self.recipe.early_stopping.patience
        if patience is not None and state["bad_epochs"] > patience:
            state["stopped_early"] = True

    def fit(self) -> FitResult:
        """Run (or continue) all phases; returns the best, final, EMA and top-k averaged weights."""
        recipe = self.recipe
        while self.state["epoch"] < recipe.total_epochs and not self.state["stopped_early"]:
            epoch = self.state["epoch"]
            index, in_phase = phase_at(recipe.phases, epoch)
            if index != self._phase_index:
                self._enter_phase(index)
            seed_everything(recipe.seed * 100_003 + epoch, recipe.deterministic)
            started = time.perf_counter()
            lr = max(g["lr"] for g in self.optimizer.param_groups)
            train_loss = self._train_epoch(epoch)
            val = self._validate()
            self._step_scheduler(in_phase, val)
            self._track(epoch, val)
            entry = {
                "epoch": epoch + 1,
                "phase": recipe.phases[index].name,
                "lr": lr,
                "train_loss": train_loss,
                "val_loss": val.get("loss"),
                **{f"val_{k}": val.get(k) for k in SCALAR_METRICS},
                "seconds": time.perf_counter() - started,
            }
            self.state["history"].append(entry)
            self.state["epoch"] = epoch + 1
            self._save()
            log.info(
                "epoch %d/%d [%s] train_loss %.4f val_loss %.4f val_bal_acc %.3f lr %.2e",
                epoch + 1,
                recipe.total_epochs,
                entry["phase"],
                train_loss,
                val.get("loss", math.nan),
                val.get("balanced_accuracy", math.nan),
                entry["lr"],
            )
            if self.progress is not None:
                self.progress(entry)
        return self._result()

    def _result(self) -> FitResult:
        state = self.state
        topk = None
        if state["topk"]:
            topk = average_states([item["state"] for item in state["topk"]])
        final = cpu_state(self.model)
        return FitResult(
            history=copy.deepcopy(state["history"]),
            best_epoch=state["best_epoch"] + 1,
            best_score=state["best_score"],
            best_state=state["best_state"] or final,
            final_state=final,
            ema_state=cpu_state(self.ema.module) if self.ema is not None else None,
            topk_state=topk,
            stopped_early=state["stopped_early"],
        )
