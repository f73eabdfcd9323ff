"""Train/validation/test splits that keep each patient in one part (unless a recipe asks otherwise).

Seed 000 splits BreaKHis by image, so crops of the same slide land in train and test and
the test figures are optimistic. Here the default protocols group by patient with
scikit-learn's GroupShuffleSplit / StratifiedGroupKFold; image-level protocols exist only
to reproduce a seed, and every run made with one is flagged ``leaky``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import (
    GroupShuffleSplit,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)

from napari_pathreview.errors import InvalidInputError

PROTOCOLS: tuple[str, ...] = ("patient_holdout", "patient_kfold", "image_holdout", "image_kfold")


class SplitError(InvalidInputError):
    """The data cannot be split as the recipe asks (too few patients or images)."""


@dataclass(frozen=True)
class Fold:
    """Indices into the sample list for one train/val/test partition."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


@dataclass(frozen=True)
class SplitPlan:
    """All folds of one protocol, with what the metrics must say about it."""

    protocol: str
    leaky: bool
    folds: tuple[Fold, ...]
    description: str


def _n_classes(labels: np.ndarray, idx: np.ndarray) -> int:
    return int(np.unique(labels[idx]).size)


def _group_holdout(labels, groups, idx, fraction, seed, tries=50):
    """One GroupShuffleSplit of ``idx``; retries seeds so both sides keep every class."""
    splitter_groups = groups[idx]
    if np.unique(splitter_groups).size < 2:
        raise SplitError("need at least two patients to split by patient")
    best = None
    for attempt in range(tries):
        gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed + attempt)
        keep, held = next(gss.split(idx, labels[idx], splitter_groups))
        keep, held = idx[keep], idx[held]
        score = _n_classes(labels, keep) + _n_classes(labels, held)
        if best is None or score > best[0]:
            best = (score, keep, held)
        if score == 2 * _n_classes(labels, idx):
            break
    return best[1], best[2]


def _image_holdout(labels, idx, fraction, seed):
    stratify = labels[idx] if np.bincount(labels[idx]).min(initial=0) >= 2 else None
    try:
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed)
    return np.asarray(keep), np.asarray(held)


def _fold(train, val, test) -> Fold:
    return Fold(
        tuple(sorted(map(int, train))), tuple(sorted(map(int, val))), tuple(sorted(map(int, test)))
    )


def make_splits(
    labels: Sequence[int],
    groups: Sequence[str],
    protocol: str = "patient_holdout",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    folds: int = 5,
    seed: int = 0,
) -> SplitPlan:
    """Build the folds of a protocol.

    Args:
        labels: class index per sample (used for stratification).
        groups: patient id per sample (ignored by image-level protocols).
        protocol: one of ``PROTOCOLS``.
        val_fraction: share of the data (holdout) or of each training part (k-fold) kept for
            validation: early stopping, the Youden threshold and checkpoint choice.
        test_fraction: holdout test share (k-fold tests on each fold in turn).
        folds: number of folds for the k-fold protocols.
        seed: makes the split reproducible.
    """
    if protocol not in PROTOCOLS:
        raise SplitError(
            f"unknown split protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}"
        )
    labels = np.asarray(labels).astype(int)
    groups = np.asarray([str(g) for g in groups])
    if labels.size != groups.size:
        raise SplitError("labels and groups differ in length")
    if labels.size < 4:
        raise SplitError(f"only {labels.size} samples: too few to split into train/val/test")
    everything = np.arange(labels.size)
    by_patient = protocol.startswith("patient")
    if protocol.endswith("holdout"):
        if by_patient:
            rest, test = _group_holdout(labels, groups, everything, test_fraction, seed)
            share = val_fraction / (1 - test_fraction)
            train, val = _group_holdout(labels, groups, rest, share, seed)
        else:
            rest, test = _image_holdout(labels, everything, test_fraction, seed)
            train, val = _image_holdout(labels, rest, val_fraction / (1 - test_fraction), seed)
        plan_folds = (_fold(train, val, test),)
        train_share = 1 - val_fraction - test_fraction
        text = f"{protocol}: {train_share:.0%}/{val_fraction:.0%}/{test_fraction:.0%}"
    else:
        plan_folds = _kfold(labels, groups, everything, folds, val_fraction, seed, by_patient)
        text = f"{protocol}: {folds}-fold, validation {val_fraction:.0%} of each training part"
    text += " grouped by patient" if by_patient else " by image (patients leak across splits)"
    plan = SplitPlan(protocol, not by_patient, plan_folds, text)
    if by_patient:
        assert_no_patient_overlap(plan, groups)
    return plan


def _kfold(labels, groups, idx, k, val_fraction, seed, by_patient) -> tuple[Fold, ...]:
    if k < 2:
        raise SplitError("k-fold needs at least 2 folds")
    if by_patient:
        if np.unique(groups).size < k:
            raise SplitError(f"{np.unique(groups).size} patients cannot fill {k} folds")
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(idx, labels, groups)
    else:
        min_count = np.bincount(labels).min()
        if min_count < k:
            raise SplitError(f"a class has {min_count} images: too few for {k} stratified folds")
        parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, labels)
    out = []
    for fold_number, (rest, test) in enumerate(parts):
        if by_patient:
            train, val = _group_holdout(labels, groups, rest, val_fraction, seed + fold_number)
        else:
            train, val = _image_holdout(labels, rest, val_fraction, seed + fold_number)
        out.append(_fold(train, val, test))
    return tuple(out)


def assert_no_patient_overlap(plan: SplitPlan, groups: Sequence[str]) -> None:
    """Raise SplitError if any patient appears in two parts of one fold."""
    groups = np.asarray([str(g) for g in groups])
    for number, fold in enumerate(plan.folds):
        parts = {name: set(groups[list(getattr(fold, name))]) for name in ("train", "val", "test")}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = parts[a] & parts[b]
            if shared:
                raise SplitError(
                    f"fold {number}: patients in both {a} and {b}: {sorted(shared)[:5]}"
                )


def _record(plan: SplitPlan, samples: Sequence) -> dict:
    """Which image (and patient) went where, per fold: the audit trail of the split."""

    def entry(i: int) -> dict:
        sample = samples[i]
        return {"path": sample.path, "patient_id": sample.patient_id, "label": sample.label}

    folds = [
        {name: [entry(i) for i in getattr(fold, name)] for name in ("train", "val", "test")}
        for fold in plan.folds
    ]
    payload = {"protocol": plan.protocol, "leaky": plan.leaky, "description": plan.description}
    return {**payload, "folds": folds}


def record_splits(plan: SplitPlan, samples: Sequence, path: Path) -> None:
    """Write ``splits.json``; refuse when the run folder's record says another split.

    A resumed run reuses its finished folds, which were trained and tested on the recorded
    split: beside folds of another split (files added or removed, labels changed) the pooled
    test figures would include images some fold trained on.

    Raises:
        SplitError: The recorded split differs; names the first fold and part that differs.
    """
    record = _record(plan, samples)
    try:
        before = json.loads(path.read_text(encoding="utf-8"))["folds"]
    except (OSError, ValueError, KeyError, TypeError):
        before = None
    if before is not None and before != record["folds"]:
        raise SplitError(
            f"{path.parent}: the data no longer splits as when this run began "
            f"({path.name}: {_first_difference(before, record['folds'])}); its finished folds "
            "were trained on that split. Restore the data, or start a new run"
        )
    path.write_text(json.dumps(record, indent=1))


def _first_difference(before: list, now: list) -> str:
    """Where two split records first differ, with an image that moved."""
    for index, (old, new) in enumerate(zip(before, now, strict=False)):
        for part in ("train", "val", "test"):
            was = {row["path"] for row in old.get(part, [])}
            is_ = {row["path"] for row in new[part]}
            if old.get(part) != new[part]:
                moved = sorted(was ^ is_)
                detail = f", e.g. {moved[0]}" if moved else " (labels or patients changed)"
                return f"fold {index}'s {part} part differs{detail}"
    return f"{len(before)} fold(s) then, {len(now)} now"
