"""The result panel's words and the review's agreement rule, tested without a viewer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_pathreview.widgets._panel import decision_text, metric_lines, uncertainty_flags
from napari_pathreview.widgets._review_state import (
    AgreementError,
    agrees_with_model,
    restored_state,
)


def test_decision_line_compares_the_probability_with_the_threshold() -> None:
    probs = {"benign": 0.512, "malignant": 0.488}
    assert decision_text(probs, "benign", 0.516) == "P(malignant) = 0.488 < 0.516 → benign"
    assert decision_text(probs, "malignant", 0.4) == "P(malignant) = 0.488 ≥ 0.400 → malignant"


def test_borderline_and_near_uniform_outputs_are_flagged() -> None:
    assert uncertainty_flags({"benign": 0.512, "malignant": 0.488}, 0.516)[0].startswith(
        "borderline"
    )
    assert uncertainty_flags({"benign": 0.9, "malignant": 0.1}, 0.5) == []
    flags = uncertainty_flags({"normal": 0.332, "benign": 0.333, "malignant": 0.335}, None)
    assert any("near-uniform output (0.332 / 0.333 / 0.335)" in f for f in flags)
    assert uncertainty_flags({"normal": 0.05, "benign": 0.05, "malignant": 0.9}, None) == []


def test_metrics_carry_their_n_and_interval() -> None:
    metrics = {"test": {"auc": 1.0, "n": 5, "ci95": {"auc": [0.62, 1.0]}}}
    lines = metric_lines(metrics)
    assert lines[0] == "test AUC 1.000 (95 % CI 0.62–1.00, n = 5)"
    assert lines[-1].startswith("small test set (5 images)")
    assert metric_lines({}) == ["no test metrics on the model card"]


def _card_metrics(malignant_patients: int) -> dict:
    """A card's test block as training writes it: figures and their patient bootstrap, 20
    patients of 5 images each, the first ``malignant_patients`` of them malignant."""
    from napari_pathreview.training.metrics import compute_metrics
    from napari_pathreview.training.statistics import Resampling, bootstrap_report

    patients = np.repeat(np.arange(20), 5)
    y = (patients < malignant_patients).astype(int)
    p = np.where(y == 1, 0.8, 0.3)
    probs = np.stack([1 - p, p], 1)
    report = bootstrap_report(y, probs, 0.5, Resampling(200, 0, patients))
    return {"test": {**compute_metrics(y, probs, 0.5), **report, "n": int(y.size)}}


def test_an_interval_resting_on_few_resamples_says_on_how_many() -> None:
    """One malignant patient: about a third of the resamples draw no malignant image and
    define no AUC, so its interval rests on the others, and the panel says so."""
    test = _card_metrics(malignant_patients=1)["test"]
    used, drawn = test["ci_n_resamples"]["roc_auc"], test["ci_n_drawn"]
    assert 0 < used < 0.9 * drawn
    lines = metric_lines({"test": test})
    (auc,) = [line for line in lines if line.startswith("test AUC")]
    assert f" on {used} of {drawn} resamples, n = 100)" in auc
    (accuracy,) = [line for line in lines if line.startswith("test balanced accuracy")]
    assert "resamples" not in accuracy  # defined on every resample
    assert any(line.startswith("an interval on under 90% of the resamples") for line in lines)


def test_an_interval_on_nearly_every_resample_carries_no_count() -> None:
    lines = metric_lines(_card_metrics(malignant_patients=5))
    assert not any("resamples" in line for line in lines)


def test_agreement_is_null_without_a_prediction_and_contradictions_are_refused() -> None:
    prediction = {"label": "malignant"}
    assert agrees_with_model("benign", "agree", None) is None
    assert agrees_with_model("malignant", "agree", prediction) is True
    assert agrees_with_model("benign", "disagree", prediction) is False
    with pytest.raises(AgreementError, match="model's own call"):
        agrees_with_model("malignant", "disagree", prediction)
    with pytest.raises(AgreementError, match="choose 'disagree'"):
        agrees_with_model("benign", "agree", prediction)


def test_a_saved_review_restores_the_form() -> None:
    record = SimpleNamespace(
        id=7, label="benign", agrees_with_model=False, confidence=0.4, notes="n", roi_geojson=None
    )
    state = restored_state(record, {"label": "malignant"})
    assert (state.label, state.agreement, state.confidence, state.review_id) == (
        "benign",
        "disagree",
        0.4,
        7,
    )


def test_the_panel_shows_the_macro_f1_training_writes() -> None:
    """Training writes ``f1_macro`` beside AUC and balanced accuracy; the panel shows all three."""
    lines = metric_lines(_card_metrics(malignant_patients=10))
    names = [line.split(" (")[0].rsplit(" ", 1)[0] for line in lines[:3]]
    assert names == ["test AUC", "test balanced accuracy", "test macro F1"]


def test_a_card_with_both_auc_keys_shows_its_auc_once() -> None:
    lines = metric_lines({"test": {"auc": 0.9, "roc_auc": 0.9, "accuracy": 0.8}})
    assert [line.startswith("test AUC") for line in lines] == [True, False]
