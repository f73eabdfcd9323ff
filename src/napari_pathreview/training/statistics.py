"""Uncertainty and model comparison: bootstrap CIs, k-fold summaries, Friedman + Nemenyi.

The seed papers report point figures only; a 60-image test set deserves an interval. Every
interval here is a bootstrap percentile interval centred on its figure (``centred_interval``),
so a reported figure always lies inside its own interval.
Seed 004 compares models with Friedman + Nemenyi and a critical-difference diagram;
scipy supplies the Friedman test and the studentized range distribution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.training.metrics import SCALAR_METRICS, compute_metrics


@dataclass(frozen=True)
class Resampling:
    """How a bootstrap draws: ``n_resamples`` resamples from ``seed``, of single images or,
    when ``groups`` names each image's split group (``bootstrap_groups``), of whole groups.

    Images of one patient are not independent (BreaKHis has dozens per patient): resampling
    them one by one gives intervals as if each were another patient, far too narrow. A
    patient drawn brings all of its images. ``group_by`` (``split.group_by``) names the
    groups in metrics.json (``resampled_unit``).
    """

    n_resamples: int = 1000
    seed: int = 0
    groups: Sequence | None = field(default=None, hash=False)
    group_by: str = "patient"

    @classmethod
    def of_run(cls, recipe, groups: Sequence | None) -> Resampling:
        """A training run's bootstrap (``eval.bootstrap``, ``seed``, ``split.group_by``)
        drawing ``groups``."""
        return cls(recipe.eval.bootstrap, recipe.seed, groups, recipe.split.group_by)


def bootstrap_ci(
    y_true: Sequence[int],
    probs: np.ndarray,
    threshold: float | None = None,
    resampling: Resampling = Resampling(),
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of every scalar metric (``centred_interval``), drawing images or
    whole patients as ``resampling`` says.

    A hand loop rather than ``scipy.stats.bootstrap`` because a resample can leave a metric
    undefined (AUC or sensitivity without a malignant image): those are dropped per metric,
    so that metric's interval is conditional on the resamples that define it, instead of
    poisoned (``bootstrap_report`` counts them).

    Returns:
        metric name → (low, high); (nan, nan) when no resample defined the metric.
    """
    point, samples = _resampled_metrics(y_true, probs, threshold, resampling)
    return {name: centred_interval(samples[name], point[name], confidence) for name in samples}


def bootstrap_report(
    y_true: Sequence[int], probs: np.ndarray, threshold: float | None, resampling: Resampling
) -> dict:
    """What metrics.json says of a figure set's bootstrap: ``ci95`` (``bootstrap_ci``),
    ``ci_resampled`` (``resampled_unit``), ``ci_n_drawn`` and ``ci_n_resamples``, per metric
    the resamples its interval rests on. AUC needs both classes in a resample, sensitivity a
    positive image: with one or two minority patients up to a third of the resamples lack
    them, and the interval is conditional on the resamples that drew them (an interval on
    few of them is marked: ``ci_counts.thin_intervals``)."""
    point, samples = _resampled_metrics(y_true, probs, threshold, resampling)
    return {
        "ci95": {name: list(centred_interval(samples[name], point[name])) for name in samples},
        "ci_resampled": resampled_unit(resampling.groups, resampling.group_by),
        "ci_n_drawn": int(resampling.n_resamples) if len(y_true) else 0,
        "ci_n_resamples": {name: len(values) for name, values in samples.items()},
    }


def _resampled_metrics(
    y_true: Sequence[int], probs: np.ndarray, threshold: float | None, resampling: Resampling
) -> tuple[dict, dict[str, list[float]]]:
    """The figures and, per scalar metric, its values on the resamples that define it."""
    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=float)
    samples: dict[str, list[float]] = {name: [] for name in SCALAR_METRICS}
    if y_true.size == 0:
        return {name: math.nan for name in SCALAR_METRICS}, samples
    point = compute_metrics(y_true, probs, threshold, with_confusion=False)
    draw = resampler(y_true.size, resampling.groups)
    rng = np.random.default_rng(resampling.seed)
    for _ in range(resampling.n_resamples):
        idx = draw(rng)
        values = compute_metrics(y_true[idx], probs[idx], threshold, with_confusion=False)
        for name in SCALAR_METRICS:
            if math.isfinite(values[name]):
                samples[name].append(values[name])
    return point, samples


def centred_interval(
    resampled: Sequence[float],
    point: float,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> tuple[float, float]:
    """The bootstrap percentile interval moved onto the reported figure: ``point`` plus the
    distances of the resamples' 2.5th and 97.5th percentiles from their median, within
    ``bounds`` (every metric here lies in [0, 1]).

    The plain percentile interval assumes the resamples scatter around the figure itself. A
    binned ECE does not: each resample duplicates images, its bins' accuracies are noisier,
    and |accuracy - confidence| only grows with noise, so the resamples sit above the figure
    and a well-calibrated model's ECE fell below its own interval (0.021 [0.026, 0.063] on
    500 images whose labels were drawn from the model's own probabilities). Subtracting the
    resamples' median bias keeps the spread and always puts the figure inside (the median
    lies between the percentiles); for a metric the bootstrap centres on its figure
    (accuracy, AUC) the interval barely moves. It is the sampling spread of the figure as
    computed (an ECE on this many images, upward-biased like any binned ECE), not an
    interval for a bias-corrected value, which would sit below the figure.

    Returns:
        (low, high); the plain percentiles when ``point`` is undefined; (nan, nan) with no
        resample.
    """
    values = np.asarray(resampled, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    low, median, high = np.quantile(values, [alpha, 0.5, 1.0 - alpha])
    if math.isfinite(point):
        low, high = point + (low - median), point + (high - median)
    return float(max(low, bounds[0])), float(min(high, bounds[1]))


def resampled_unit(groups: Sequence | None, group_by: str = "patient") -> str:
    """What the bootstrap drew, for metrics.json: "N patients", "N patient_stem groups"
    (``split.group_by``) or "images"."""
    if groups is None:
        return "images"
    count = len({str(g) for g in groups})
    return f"{count} patients" if group_by == "patient" else f"{count} {group_by} groups"


def bootstrap_groups(
    items: Sequence, paths: Sequence[str], group_by: str, leaky: bool
) -> list[str] | None:
    """The split group (``datasets.split_group``) of each pooled test image, in ``paths``'
    order: what the bootstrap draws whole. None for a leaky (image-level) protocol, whose
    split already treats images as independent; a path no item lists is a group of its own.

    Args:
        items: the run's samples or prepared images (``path`` and ``patient_id``).
        paths: the pooled test images.
    """
    if leaky:
        return None
    from napari_pathreview.training.datasets import split_group

    group_of = {item.path: split_group(item, group_by) for item in items}
    return [group_of.get(path, path) for path in paths]


def population(items: Sequence, group_by: str) -> dict:
    """What a run's metrics.json counts: ``n_images``; ``n_patients``, the distinct patient
    IDs (as splits.json lists them); and ``n_groups``, the units the split keeps together
    and the bootstrap draws (``split.group_by``: patients, or BreaKHis patient-code stems,
    which may join two patient IDs into one group)."""
    from napari_pathreview.training.datasets import split_group

    return {
        "n_images": len(items),
        "n_patients": len({item.patient_id for item in items}),
        "group_by": group_by,
        "n_groups": len({split_group(item, group_by) for item in items}),
    }


def resampler(n_images: int, groups: Sequence | None):
    """A function of a generator giving one bootstrap resample's image indices: images drawn
    with replacement, or whole groups (``bootstrap_groups``) when ``groups`` is given."""
    if groups is None:
        return lambda rng: rng.integers(0, n_images, n_images)
    if len(groups) != n_images:
        raise InvalidInputError(f"bootstrap: {len(groups)} patients given for {n_images} images")
    codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
    members = [np.flatnonzero(codes == g) for g in range(int(codes.max()) + 1)]
    return lambda rng: np.concatenate(
        [members[g] for g in rng.integers(0, len(members), len(members))]
    )


def summarize_folds(per_fold: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean ± sample standard deviation of each scalar metric over folds (NaN folds skipped)."""
    summary = {}
    for name in SCALAR_METRICS:
        values = [f[name] for f in per_fold if f.get(name) is not None and math.isfinite(f[name])]
        if values:
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            summary[name] = {"mean": float(np.mean(values)), "sd": sd, "n_folds": len(values)}
        else:
            summary[name] = {"mean": math.nan, "sd": math.nan, "n_folds": 0}
    return summary


@dataclass(frozen=True)
class FriedmanNemenyiResult:
    """Outcome of comparing k models over N folds/datasets (Demšar 2006)."""

    names: tuple[str, ...]
    average_ranks: tuple[float, ...]  # rank 1 = best
    statistic: float
    p_value: float
    critical_difference: float
    pairwise_p: tuple[tuple[float, ...], ...]  # Nemenyi p-values, k×k

    def to_dict(self) -> dict:
        """JSON-able form for metrics.json."""
        return {
            "names": list(self.names),
            "average_ranks": list(self.average_ranks),
            "friedman_statistic": self.statistic,
            "friedman_p": self.p_value,
            "critical_difference": self.critical_difference,
            "nemenyi_p": [list(row) for row in self.pairwise_p],
        }


def friedman_nemenyi(
    scores: np.ndarray, names: Sequence[str], alpha: float = 0.05, higher_is_better: bool = True
) -> FriedmanNemenyiResult:
    """Friedman test over an N×k score table, then Nemenyi's post-hoc critical difference.

    Args:
        scores: rows = folds (or datasets), columns = models.
        names: one name per column.
        alpha: significance level of the critical difference.
        higher_is_better: rank the highest score first (accuracy); False for losses.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise InvalidInputError("scores must be N folds × k models, one name per model")
    n, k = scores.shape
    if k < 3 or n < 2:
        raise InvalidInputError("Friedman's test needs at least 3 models and 2 folds")
    statistic, p_value = stats.friedmanchisquare(*scores.T)
    ranks = stats.rankdata(-scores if higher_is_better else scores, axis=1)
    average = ranks.mean(axis=0)
    scale = math.sqrt(k * (k + 1) / (6.0 * n))
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    pairwise = []
    for i in range(k):
        row = []
        for j in range(k):
            q = abs(average[i] - average[j]) / scale * math.sqrt(2)
            row.append(1.0 if i == j else float(stats.studentized_range.sf(q, k, np.inf)))
        pairwise.append(tuple(row))
    return FriedmanNemenyiResult(
        names=tuple(names),
        average_ranks=tuple(float(r) for r in average),
        statistic=float(statistic),
        p_value=float(p_value),
        critical_difference=float(q_alpha * scale),
        pairwise_p=tuple(pairwise),
    )


def plot_critical_difference(result: FriedmanNemenyiResult, path: str | Path) -> Path:
    """Demšar's critical-difference diagram: ranks, the CD bar, non-different groups joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.names)
    order = np.argsort(result.average_ranks)
    ranks = np.asarray(result.average_ranks)[order]
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.3 * k))
    ax.set_xlim(1, k)
    ax.set_ylim(0, k + 2)
    ax.invert_xaxis()
    ax.get_yaxis().set_visible(False)
    ax.set_xlabel("average rank (1 = best)")
    for pos, (idx, rank) in enumerate(zip(order, ranks, strict=True)):
        y = k - pos
        ax.plot([rank, rank], [k + 1, y], color="k", lw=0.8)
        ax.text(rank, y - 0.3, f"{result.names[idx]} ({rank:.2f})", ha="center", fontsize=8)
    ax.plot([1, 1 + result.critical_difference], [k + 1.6] * 2, color="r", lw=2)
    ax.text(
        1 + result.critical_difference / 2,
        k + 1.75,
        f"CD = {result.critical_difference:.2f}",
        ha="center",
        fontsize=8,
        color="r",
    )
    for i in range(k):
        j = i
        while j + 1 < k and ranks[j + 1] - ranks[i] <= result.critical_difference:
            j += 1
        if j > i:
            ax.plot([ranks[i], ranks[j]], [k + 1.2 - 0.1 * i] * 2, color="b", lw=3, alpha=0.6)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def compare_runs(
    run_dirs: Sequence[str | Path],
    metric: str = "balanced_accuracy",
    plot: str | Path | None = None,
) -> FriedmanNemenyiResult:
    """Friedman + Nemenyi over k-fold runs of several models on the same folds (seed 004).

    Args:
        run_dirs: run folders (each with metrics.json from the same split protocol and seed);
            fold k must test the same images in each (checked against splits.json). Runs of
            one recipe (several ``--set``) are named by their folders.
        metric: per-fold test metric to rank by (higher is better; "ece" ranks lower first).
        plot: where to write the critical-difference diagram, if anywhere.
    """
    import json

    names, columns, protocols = [], [], set()
    for run_dir in run_dirs:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        protocols.add((metrics["split_protocol"], len(metrics["folds"])))
        names.append(metrics["recipe"])
        columns.append([fold["test"][metric] for fold in metrics["folds"]])
    if len(protocols) != 1:
        raise InvalidInputError(f"runs used different splits, cannot pair folds: {protocols}")
    _check_same_test_images(run_dirs)
    if len(set(names)) < len(names):  # one recipe run with different --set: tell them apart
        names = [Path(run_dir).name for run_dir in run_dirs]
    result = friedman_nemenyi(
        np.asarray(columns, dtype=float).T, names, higher_is_better=metric != "ece"
    )
    if plot is not None:
        plot_critical_difference(result, plot)
    return result


def _fold_test_images(run_dir: Path) -> list[set[str]] | None:
    """Each fold's test images per the run's splits.json (None for a run folder without one)."""
    import json
    import os

    path = run_dir / "splits.json"
    if not path.is_file():
        return None
    folds = json.loads(path.read_text())["folds"]
    return [{os.path.normpath(row["path"]) for row in fold["test"]} for fold in folds]


def _check_same_test_images(run_dirs: Sequence[str | Path]) -> None:
    """Refuse runs whose folds hold different images: the same protocol and fold count on other
    data (a ``data.subset``, another seed) pairs unrelated scores, and the test means nothing."""
    reference, first = None, None
    for run_dir in map(Path, run_dirs):
        folds = _fold_test_images(run_dir)
        if folds is None:
            continue
        if reference is None:
            reference, first = folds, run_dir
            continue
        for index, (mine, theirs) in enumerate(zip(folds, reference, strict=True)):
            if mine != theirs:
                raise InvalidInputError(
                    f"{run_dir}: fold {index} tests other images than {first}'s "
                    f"({len(mine ^ theirs)} differ); compare runs of the same data, split "
                    "protocol and seed, so that fold k holds the same images in every run"
                )
