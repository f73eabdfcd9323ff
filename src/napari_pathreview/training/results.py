"""Typed results of a training run: one :class:`FoldResult` per fold, one :class:`RunResult`.

A fold's result is written to ``fold<k>/fold.json`` when the fold finishes (so ``--resume``
skips it) and read back as the same dataclass; every later step (run summary, registration,
CAM IoU, external test) takes these objects rather than loose dicts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.preprocessing import PreprocessSpec
from napari_pathreview.training.metrics import json_safe

WEIGHTS_NAME = "selected.safetensors"
FOLD_FILE = "fold.json"
RECIPE_FILE = "recipe.yaml"
RUN_LOCK_FILE = ".run.lock"  # held by the process writing the run folder


@dataclass(frozen=True)
class TestPredictions:
    """The test part's images, true class indices and probabilities (N×K), in order."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    probs: tuple[tuple[float, ...], ...]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probs) as numpy arrays."""
        return np.asarray(self.labels, dtype=int), np.asarray(self.probs, dtype=float)


@dataclass(frozen=True)
class FoldResult:
    """One trained and evaluated fold.

    Attributes:
        fold: Fold index.
        classes: Class names in logit order.
        sizes: Images per part ("train", "val", "test").
        patients: Patients per part.
        best_epoch: Epoch whose weights were selected.
        best_val_score: Validation score of that epoch (None when nothing was scored).
        stopped_early: Whether early stopping ended the fit.
        threshold: Decision threshold chosen on validation (None: argmax).
        val: Validation metrics at that threshold.
        test: Test metrics at that threshold.
        history: Per-epoch log of the fit.
        test_predictions: What the test metrics were computed from.
        preprocess: The fold's preprocessing spec (with the stain target fitted on this
            fold's training part): what a model registered from this fold is fed with.
        weights: File name of the selected weights in the fold folder.
    """

    fold: int
    classes: tuple[str, ...]
    sizes: dict
    patients: dict
    best_epoch: int
    best_val_score: float | None
    stopped_early: bool
    threshold: float | None
    val: dict
    test: dict
    history: list
    test_predictions: TestPredictions
    preprocess: PreprocessSpec
    weights: str = WEIGHTS_NAME

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (what ``fold.json`` holds)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["classes"] = list(self.classes)
        data["test_predictions"] = asdict(self.test_predictions)
        data["preprocess"] = self.preprocess.to_dict()
        return json_safe(data)

    def summary(self) -> dict[str, Any]:
        """The fold's row in ``metrics.json``: everything but predictions and history."""
        data = self.to_dict()
        for name in ("test_predictions", "history", "preprocess"):
            data.pop(name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldResult:
        """Read back what :meth:`to_dict` wrote."""
        known = {f.name for f in fields(cls)}
        missing = sorted(known - set(data) - {"weights"})
        if missing:
            raise InvalidInputError(
                f"fold result lacks {missing}: written by an older version; re-run the fold"
            )
        values = {k: v for k, v in data.items() if k in known}
        predictions = data["test_predictions"]
        values["classes"] = tuple(data["classes"])
        values["test_predictions"] = TestPredictions(
            tuple(predictions["paths"]),
            tuple(int(v) for v in predictions["labels"]),
            tuple(tuple(float(p) for p in row) for row in predictions["probs"]),
        )
        values["preprocess"] = PreprocessSpec.from_dict(data["preprocess"])
        return cls(**values)


@dataclass(frozen=True)
class RunResult:
    """Where a run went, what it measured (``metrics.json``), what it registered."""

    run_dir: Path
    metrics: dict
    registered: str | None
    folds: tuple[FoldResult, ...] = field(default=(), repr=False)


def fold_dir(run_dir: Path, index: int) -> Path:
    """The folder of fold ``index`` inside a run folder."""
    return Path(run_dir) / f"fold{index}"


def write_fold(run_dir: Path, result: FoldResult) -> None:
    """Write ``fold<k>/fold.json``."""
    (fold_dir(run_dir, result.fold) / FOLD_FILE).write_text(json.dumps(result.to_dict()))


def read_fold(run_dir: Path, index: int) -> FoldResult | None:
    """The finished fold ``index`` of a run folder, or None if it has not finished."""
    path = fold_dir(run_dir, index) / FOLD_FILE
    if not path.is_file():
        return None
    return FoldResult.from_dict(json.loads(path.read_text()))


def best_fold(folds: list[FoldResult] | tuple[FoldResult, ...]) -> int:
    """The fold whose model is registered: highest validation score (ties → lowest index)."""
    scores = [-np.inf if f.best_val_score is None else f.best_val_score for f in folds]
    return int(np.argmax(scores))
