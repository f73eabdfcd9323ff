"""Agreement statistics: how often reviewers agree with each other and with the model.

Cohen's kappa (scikit-learn's ``cohen_kappa_score``) corrects raw agreement for the agreement
two raters would reach by chance. Only each reviewer's *latest* review of an image counts (a
reviewer who changes their mind is counted once, with the new label), and a pair is compared
on the images both have reviewed. Reviewer-vs-model compares the reviewer's label with the
model's call (``predicted_label``) on the reviews linked to a prediction.

Kappa is undefined when there are no shared items, or when both raters gave one and the same
label to everything (chance agreement is then 1); it is reported as ``None`` there, with the
raw agreement beside it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from napari_pathreview.review.records import ReviewRecord


@dataclass(frozen=True)
class KappaResult:
    """Agreement between two raters (a reviewer, or ``"model"``) on ``n`` shared items."""

    rater_a: str
    rater_b: str
    n: int
    observed_agreement: float | None
    kappa: float | None


@dataclass(frozen=True)
class AgreementStats:
    """Counts, the disagreement rate with the model and the kappas."""

    n_reviews: int
    n_images: int
    n_reviewers: int
    n_disagreements: int
    disagreement_rate: float | None
    reviewer_pairs: tuple[KappaResult, ...]
    reviewer_vs_model: tuple[KappaResult, ...]


def latest_reviews(records: Iterable[ReviewRecord]) -> list[ReviewRecord]:
    """The latest review per (image, reviewer), by time then id; in input order of the winners."""
    latest: dict[tuple[str, str], ReviewRecord] = {}
    for record in records:
        key = (record.image_sha256, record.reviewer)
        current = latest.get(key)
        if current is None or (record.created_at, record.id) > (current.created_at, current.id):
            latest[key] = record
    return sorted(latest.values(), key=lambda r: (r.created_at, r.id))


def kappa(
    rater_a: str, rater_b: str, labels_a: Sequence[str], labels_b: Sequence[str]
) -> KappaResult:
    """Cohen's kappa of two equally long label sequences (``None`` where undefined)."""
    n = len(labels_a)
    if n == 0:
        return KappaResult(rater_a, rater_b, 0, None, None)
    observed = sum(a == b for a, b in zip(labels_a, labels_b, strict=True)) / n
    if len(set(labels_a) | set(labels_b)) < 2:
        return KappaResult(rater_a, rater_b, n, observed, None)
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohen_kappa_score(list(labels_a), list(labels_b)))
    return KappaResult(rater_a, rater_b, n, observed, None if math.isnan(value) else value)


def compute_agreement(records: Iterable[ReviewRecord]) -> AgreementStats:
    """Agreement over the latest review per (image, reviewer) among ``records``."""
    latest = latest_reviews(records)
    by_reviewer: dict[str, dict[str, ReviewRecord]] = {}
    for record in latest:
        by_reviewer.setdefault(record.reviewer, {})[record.image_sha256] = record
    pairs = []
    for a, b in itertools.combinations(sorted(by_reviewer), 2):
        shared = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
        pairs.append(
            kappa(
                a,
                b,
                [by_reviewer[a][s].label for s in shared],
                [by_reviewer[b][s].label for s in shared],
            )
        )
    vs_model = []
    for name in sorted(by_reviewer):
        linked = [r for r in by_reviewer[name].values() if r.predicted_label is not None]
        vs_model.append(
            kappa(
                name, "model", [r.label for r in linked], [str(r.predicted_label) for r in linked]
            )
        )
    disagreements = sum(r.agrees_with_model is False for r in latest)
    return AgreementStats(
        n_reviews=len(latest),
        n_images=len({r.image_sha256 for r in latest}),
        n_reviewers=len(by_reviewer),
        n_disagreements=disagreements,
        disagreement_rate=disagreements / len(latest) if latest else None,
        reviewer_pairs=tuple(pairs),
        reviewer_vs_model=tuple(vs_model),
    )
