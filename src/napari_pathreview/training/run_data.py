"""What a run trains on: its samples, class order, prepared canvases and split plan.

The recipe's data are discovered (a folder, a CSV, a dataset or the review store, for
``--from-reviews``), checked (labels, modality, every class present), decoded and fitted to the
recipe's preprocessing spec once, filtered by QC and split by patient; every fold shares the
result (:class:`RunData`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathreview.preprocessing import PreprocessSpec
from napari_pathreview.training import datasets as ds
from napari_pathreview.training.evaluation import external_samples
from napari_pathreview.training.label_checks import check_labels, check_modality
from napari_pathreview.training.preparation import base_spec, qc_filter, with_measured_resolution
from napari_pathreview.training.recipe import Recipe, resolve_path
from napari_pathreview.training.splits import SplitPlan, make_splits

__all__ = ["RunData", "discover", "prepare_data", "with_reviews_source"]


@dataclass(frozen=True)
class RunData:
    """Everything folds share: samples, class order, cached canvases, split plan, base spec.

    ``prepared`` holds the canvases before stain normalisation: each fold stains them with
    the target fitted on its own training part.
    """

    samples: list
    classes: tuple
    labels: np.ndarray
    prepared: list
    plan: SplitPlan
    spec: PreprocessSpec


def discover(recipe: Recipe, workdir: Path, reviews_db: str | None = None) -> list:
    """The recipe's samples (source, task, magnification, subset), before QC."""
    data = recipe.data
    where = str(resolve_path(recipe, data.root)) if data.root else data.source
    if reviews_db is not None or data.source == "reviews":
        # --from-reviews names its store ("" = the default one); data.root is then the recipe's
        # own data, not a database, and only a `source: reviews` recipe's root names one
        db = reviews_db if reviews_db is not None else data.root
        samples = ds.from_reviews(db or None, workdir, data.disagreement_weight)
        where = f"the reviews in {db or 'the default review store'} (as `pathreview review export`)"
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
    from_csv = reviews_db is not None or data.source in ("csv", "reviews")
    check_labels(samples, data.task, where, first_row=2 if from_csv else None)
    check_modality(samples, recipe.modality, where)
    return ds.stratified_subset(samples, data.subset, recipe.seed)


def prepare_data(recipe: Recipe, workdir: Path, reviews_db: str | None = None) -> RunData:
    """Discover, decode and fit to the recipe's spec (once), QC, split by patient."""
    samples = discover(recipe, workdir, reviews_db)
    _require_every_class(recipe, samples, "in the data")
    if recipe.data.external_test:  # scored after training: checked before it
        external_samples(recipe, ds.class_names(samples, recipe.data.task))
    spec = base_spec(recipe)
    qc = ds.qc_config(recipe.data) if recipe.data.qc else None  # judged from the one decode
    prepared = ds.prepare_all(samples, spec, qc=qc)
    if recipe.data.qc:
        samples, prepared = qc_filter(recipe, samples, prepared)
        _require_every_class(recipe, samples, "after QC (data.qc)")
    spec = with_measured_resolution(spec, prepared)
    classes = ds.class_names(samples, recipe.data.task)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.asarray([index[s.label] for s in samples])
    plan = split_plan(recipe, samples, labels, classes)
    return RunData(samples, classes, labels, prepared, plan, spec)


def split_plan(recipe: Recipe, samples: list, labels: np.ndarray, classes: list[str]) -> SplitPlan:
    """The recipe's split of ``samples`` by their groups (``split.group_by``); the one rule for
    image and lesion runs.

    Raises:
        DatasetError: only one class is left, so there is nothing to learn.
    """
    if len(set(labels.tolist())) < 2:
        raise ds.DatasetError(f"only one class ({classes}) in the data: nothing to learn")
    groups = [ds.split_group(s, recipe.split.group_by) for s in samples]
    cfg = recipe.split
    return make_splits(
        labels, groups, cfg.protocol, cfg.val_fraction, cfg.test_fraction, cfg.folds, recipe.seed
    )


def _require_every_class(recipe: Recipe, samples: list, where: str) -> None:
    """Refuse a task class without a single image (``mammogram`` keeps all three of MIAS's):
    the model would get an output it never learnt, and the macro figures would count it."""
    present = {s.label for s in samples}
    missing = [c for c in ds.class_names(samples, recipe.data.task) if c not in present]
    if missing:
        raise ds.DatasetError(
            f"class(es) {', '.join(map(repr, missing))} of task {recipe.data.task!r} have no "
            f"image {where} ({recipe.data.source} {recipe.data.root or ''}".rstrip()
            + "): add images of them, or set data.task to a free task name to train on the "
            f"labels present ({', '.join(sorted(present))})"
        )


def with_reviews_source(recipe: Recipe, db: str) -> Recipe:
    """The recipe as ``--from-reviews`` runs it: ``data.source: reviews`` and the store as
    ``data.root``, so the run folder's recipe.yaml (which ``--resume`` reads) and the model
    card say what the model was trained on, not the recipe's own data.

    A SQLite path is made absolute (a resume may start elsewhere); a URL loses its password,
    which must not reach recipe.yaml or a card. A lesion run sizes each reviewed image as it
    sizes a MIAS folder's, by the reader's rule (``lesion_scale``), so nothing else changes.
    """
    from urllib.parse import urlsplit, urlunsplit

    if "://" in db:
        parts = urlsplit(db)
        host = parts.hostname or ""
        netloc = (f"{parts.username}@" if parts.username else "") + host
        netloc += f":{parts.port}" if parts.port else ""
        root = urlunsplit(parts._replace(netloc=netloc))
    else:
        root = str(Path(db).expanduser().resolve()) if db else ""
    data = dataclasses.replace(recipe.data, source="reviews", root=root)
    return dataclasses.replace(recipe, data=data)
