"""The words of the Analyze result panel, with no Qt in them so they are tested directly.

A pathologist reads the decision line before the table, so it must say exactly what rule
produced the label ("P(malignant) = 0.488 < 0.516 → benign"), flag outputs the model is not
sure about instead of printing them in bold, and show the card's test metrics with the size
of the test set and their 95 % interval: "AUC 1.000" on five images means little.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from napari_pathreview.registry.card import tta_mismatch
from napari_pathreview.training.ci_counts import USABLE_SHARE, thin_intervals

#: A binary probability this close to the threshold is called borderline.
BORDERLINE_MARGIN = 0.05
#: Normalised entropy above which a multi-class output is called near-uniform.
NEAR_UNIFORM_ENTROPY = 0.95
#: Test sets smaller than this get a "small test set" caveat beside their metrics.
SMALL_TEST_SET = 30

#: Card metric key → its name in the panel, headline first: training writes ``roc_auc``,
#: ``balanced_accuracy`` and ``f1_macro`` (``training.metrics.SCALAR_METRICS``), which lead.
_METRIC_NAMES = {
    "auc": "AUC",
    "roc_auc": "AUC",
    "balanced_accuracy": "balanced accuracy",
    "f1_macro": "macro F1",
    "f1": "F1",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "kappa": "kappa",
}


def decision_text(probabilities: Mapping[str, float], label: str, threshold: float | None) -> str:
    """The rule that gave ``label``, with the numbers it compared.

    Binary models compare P(last class) with the card's threshold; the others take the most
    probable class.
    """
    classes = list(probabilities)
    if threshold is not None and len(classes) == 2:
        positive = classes[-1]
        p = float(probabilities[positive])
        sign = "≥" if p >= threshold else "<"
        return f"P({positive}) = {p:.3f} {sign} {threshold:.3f} → {label}"
    p = float(probabilities.get(label, float("nan")))
    return f"most probable class: {label} (P = {p:.3f})"


def normalised_entropy(values: Sequence[float]) -> float:
    """Shannon entropy of a probability vector divided by its maximum (1 = uniform)."""
    probs = [max(float(v), 0.0) for v in values]
    total = sum(probs)
    if len(probs) < 2 or total <= 0:
        return 0.0
    entropy = -sum((p / total) * math.log(p / total) for p in probs if p > 0)
    return entropy / math.log(len(probs))


def uncertainty_flags(
    probabilities: Mapping[str, float],
    threshold: float | None,
    margin: float = BORDERLINE_MARGIN,
) -> list[str]:
    """Why this output should not be read as a confident call (empty when it can be)."""
    classes = list(probabilities)
    values = [float(probabilities[c]) for c in classes]
    flags = []
    if threshold is not None and len(classes) == 2:
        gap = abs(values[-1] - threshold)
        if gap < margin:
            flags.append(
                f"borderline: P({classes[-1]}) is within {gap:.3f} of the threshold {threshold:.3f}"
            )
    else:
        ordered = sorted(values, reverse=True)
        if len(ordered) >= 2 and ordered[0] - ordered[1] < margin:
            flags.append(f"top two classes differ by only {ordered[0] - ordered[1]:.3f}")
    if len(values) > 2 and normalised_entropy(values) > NEAR_UNIFORM_ENTROPY:
        flags.append(
            "near-uniform output (" + " / ".join(f"{v:.3f}" for v in values) + "): "
            "the model cannot tell the classes apart on this image"
        )
    return flags


def _test_block(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    test = metrics.get("test") if isinstance(metrics, Mapping) else None
    return test if isinstance(test, Mapping) else {}


def metric_lines(metrics: Mapping[str, Any], limit: int = 3) -> list[str]:
    """'test AUC 0.912 (95 % CI 0.85–0.96, n = 40)' for the card's headline test metrics; an
    interval resting on few of the bootstrap resamples says on how many, as ``pathreview
    train`` marks it (``ci_counts.thin_intervals``)."""
    test = _test_block(metrics or {})
    if not test:
        return ["no test metrics on the model card"]
    n = test.get("n") or (metrics or {}).get("n_images")
    ci = test.get("ci95") if isinstance(test.get("ci95"), Mapping) else {}
    thin = set(thin_intervals(test))
    lines, marked, named = [], False, set()
    for key, name in _METRIC_NAMES.items():
        value = test.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or name in named:
            continue  # a card with both ``auc`` and ``roc_auc`` shows its AUC once
        named.add(name)
        interval = ci.get(key)
        if isinstance(interval, Sequence) and len(interval) == 2 and None not in interval:
            ci_text = f"95 % CI {float(interval[0]):.2f}–{float(interval[1]):.2f}"
            if key in thin:
                ci_text += f" on {test['ci_n_resamples'][key]} of {test['ci_n_drawn']} resamples"
                marked = True
        else:
            ci_text = "no CI on the card"
        n_text = f"n = {int(n)}" if isinstance(n, (int, float)) else "n unknown"
        lines.append(f"test {name} {float(value):.3f} ({ci_text}, {n_text})")
        if len(lines) >= limit:
            break
    if not lines:
        return ["no test metrics on the model card"]
    if marked:
        lines.append(
            f"an interval on under {USABLE_SHARE:.0%} of the resamples: the others lacked a "
            "class the metric needs"
        )
    if isinstance(n, (int, float)) and n < SMALL_TEST_SET:
        lines.append(f"small test set ({int(n)} images): treat these figures as rough")
    return lines


def result_texts(result: Any) -> tuple[str, str, str]:
    """(decision line as rich text, caveats, metrics) for a finished analysis.

    An uncertain output is not printed in bold: the decision reads "uncertain: <label>".
    """
    if result.prediction.qc is None:
        qc = _qc_not_run(result)
    else:
        qc = "QC: passed" if not result.warnings else "QC: " + "; ".join(result.warnings)
    return _texts(
        result.probabilities,
        str(result.prediction.label),
        result.prediction.threshold,
        f"{result.model_name}@{result.model_version}",
        qc,
        result.card,
        result.request.tta,
    )


def _qc_not_run(result: Any) -> str:
    """Why a result has no quality check: said, so a ticked box is not read as a pass."""
    if result.card.modality != "histology":
        return "QC: not run (histology only)"
    return "QC: off" if not result.request.qc else "QC: not run"


def restored_texts(record: Mapping[str, Any], card: Any) -> tuple[str, str, str]:
    """The panel's texts for a prediction restored (``_recall``), not computed by this run:
    the decision line says where it came from, so it is never read as a fresh result."""
    note = f"restored {record.get('restored', '')} (Run again for its CAM and quality check)"
    return _texts(
        record["probabilities"],
        str(record["label"]),
        record.get("threshold"),
        f"{record['model_name']}@{record['model_version']}",
        note,
        card,
        str((record.get("settings") or {}).get("tta", card.tta)),
    )


def _texts(
    probs: Mapping[str, float],
    label: str,
    threshold: float | None,
    model: str,
    note: str,
    card: Any,
    tta: str,
) -> tuple[str, str, str]:
    flags = uncertainty_flags(probs, threshold)
    shown = html.escape(label)  # the decision line is rich text: a bare "<" would start a tag
    call = f"uncertain: {shown}" if flags else f"<b>{shown}</b>"
    rule = html.escape(decision_text(probs, label, threshold))
    decision = f"Decision: {call}<br>{rule}<br>{html.escape(model)} · {html.escape(note)}"
    mismatch = tta_mismatch(card, tta)
    caveats = "\n".join(f"⚠ {flag}" for flag in [*flags, *([mismatch] if mismatch else [])])
    return decision, caveats, "\n".join(metric_lines(card.metrics))


def roi_text(
    scores: Mapping[str, float], threshold: float, roi_name: str, cam_empty: bool = False
) -> str:
    """The live IoU / Dice line under the results; an empty (constant) CAM is said to be one,
    since its zeros would otherwise read as a map that missed the ROI."""
    line = (
        f"IoU {scores['iou']:.3f} · Dice {scores['dice']:.3f} (CAM ≥ {threshold:.2f} vs {roi_name})"
    )
    if cam_empty:
        line += "\n⚠ empty CAM (constant map): it localises nothing, so 0 here is not a miss"
    return line


def two_film_text(decision: Any, card: Any = None) -> str:
    """The two-film decision as the panel shows it, with where its calibration came from."""
    probabilities = " · ".join(f"P({c}) {p:.3f}" for c, p in decision.probabilities.items())
    line = f"against {decision.other}: {decision.label} — {probabilities}"
    fitted_on = ((getattr(card, "bilateral", None) or {}).get("fitted_on")) if card else None
    return f"{line} (calibrated on {fitted_on})" if fitted_on else line
