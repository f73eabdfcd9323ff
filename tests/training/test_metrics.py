"""Metrics equal scikit-learn's on fixed inputs; Youden's J and ECE behave as defined."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.training.metrics import (
    compute_metrics,
    expected_calibration_error,
    json_safe,
    youden_threshold,
)

Y_BIN = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1])
P_POS = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.3, 0.6, 0.9, 0.2, 0.55])
P_BIN = np.stack([1 - P_POS, P_POS], axis=1)
Y_MULTI = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2])
P_MULTI = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.2, 0.7],
        [0.3, 0.3, 0.4],
        [0.5, 0.4, 0.1],
        [0.6, 0.3, 0.1],
        [0.2, 0.6, 0.2],
        [0.1, 0.8, 0.1],
        [0.4, 0.4, 0.2],
        [0.2, 0.1, 0.7],
    ]
)


def test_binary_metrics_equal_sklearn_at_a_threshold():
    result = compute_metrics(Y_BIN, P_BIN, threshold=0.5)
    pred = (P_POS >= 0.5).astype(int)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(Y_BIN, pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_BIN, pred))
    assert result["precision"] == pytest.approx(skm.precision_score(Y_BIN, pred))
    assert result["sensitivity"] == pytest.approx(skm.recall_score(Y_BIN, pred))
    assert result["specificity"] == pytest.approx(skm.recall_score(Y_BIN, pred, pos_label=0))
    assert result["f1_macro"] == pytest.approx(skm.f1_score(Y_BIN, pred, average="macro"))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BIN, P_POS))
    assert result["pr_auc"] == pytest.approx(skm.average_precision_score(Y_BIN, P_POS))
    assert result["confusion_matrix"] == skm.confusion_matrix(Y_BIN, pred).tolist()


def test_multiclass_metrics_equal_sklearn_macro_averages():
    result = compute_metrics(Y_MULTI, P_MULTI)
    pred = P_MULTI.argmax(1)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(Y_MULTI, pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_MULTI, pred))
    assert result["precision"] == pytest.approx(
        skm.precision_score(Y_MULTI, pred, average="macro", zero_division=0)
    )
    assert result["sensitivity"] == pytest.approx(skm.recall_score(Y_MULTI, pred, average="macro"))
    assert result["f1_macro"] == pytest.approx(skm.f1_score(Y_MULTI, pred, average="macro"))
    assert result["roc_auc"] == pytest.approx(
        skm.roc_auc_score(Y_MULTI, P_MULTI, multi_class="ovr", average="macro")
    )
    onehot = np.eye(3)[Y_MULTI]
    assert result["pr_auc"] == pytest.approx(
        skm.average_precision_score(onehot, P_MULTI, average="macro")
    )


def test_specificity_is_true_negative_rate_per_class_averaged():
    result = compute_metrics(Y_MULTI, P_MULTI)
    cm = skm.confusion_matrix(Y_MULTI, P_MULTI.argmax(1))
    spec = [
        (cm.sum() - cm[c].sum() - cm[:, c].sum() + cm[c, c]) / (cm.sum() - cm[c].sum())
        for c in range(3)
    ]
    assert result["specificity"] == pytest.approx(np.mean(spec))


def test_youden_threshold_maximises_sensitivity_plus_specificity():
    threshold = youden_threshold(Y_BIN, P_POS)
    fpr, tpr, thresholds = skm.roc_curve(Y_BIN, P_POS)
    assert threshold == pytest.approx(thresholds[np.argmax(tpr - fpr)])
    pred = (threshold <= P_POS).astype(int)
    j = skm.recall_score(Y_BIN, pred) + skm.recall_score(Y_BIN, pred, pos_label=0) - 1
    for other in np.linspace(0.05, 0.95, 19):
        p = (other <= P_POS).astype(int)
        assert j >= skm.recall_score(Y_BIN, p) + skm.recall_score(Y_BIN, p, pos_label=0) - 1 - 1e-9


def test_ece_is_zero_when_confidence_matches_accuracy_and_positive_otherwise():
    y = np.array([0, 0, 1, 1])
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert expected_calibration_error(y, perfect) == pytest.approx(0.0)
    overconfident = np.array([[0.99, 0.01]] * 4)  # always "0" at 99 %, right half the time
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.49)


def test_auc_is_nan_and_json_null_when_a_class_is_missing():
    result = compute_metrics(np.zeros(4, int), np.array([[0.8, 0.2]] * 4))
    assert math.isnan(result["roc_auc"])
    assert json_safe(result)["roc_auc"] is None


def test_malformed_probabilities_raise_a_clear_error():
    with pytest.raises(InvalidInputError, match="N×K"):
        compute_metrics([0, 1], np.array([0.2, 0.8]))
    with pytest.raises(InvalidInputError, match="labels must lie"):
        compute_metrics([0, 3], P_BIN[:2])


def test_the_kept_epoch_is_scored_by_the_metric_or_by_balanced_accuracy_where_it_is_undefined():
    from napari_pathreview.training.metrics import selection_score

    scores = {"roc_auc": 0.8, "loss": 0.4, "balanced_accuracy": 0.6}
    assert selection_score(scores, "roc_auc", "max") == 0.8
    assert selection_score(scores, "loss", "min") == -0.4  # higher is always better
    undefined = {"roc_auc": float("nan"), "ece": None, "balanced_accuracy": 0.6}
    assert selection_score(undefined, "roc_auc", "max") == 0.6
    assert selection_score(undefined, "ece", "min") == 0.6  # not -0.6: a better BA scores higher


def test_a_class_absent_from_the_test_part_does_not_lower_the_macro_figures():
    """A perfect model on a fold holding three of four subtypes scored 0.75 sensitivity,
    precision and macro F1 (beside a balanced accuracy of 1.0): the absent class counted 0."""
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(4)[y] * 0.9 + 0.025
    m = compute_metrics(y, probs)
    assert m["sensitivity"] == m["precision"] == m["f1_macro"] == m["balanced_accuracy"] == 1.0


def test_a_class_predicted_but_absent_counts_against_precision_and_f1():
    y = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 3])
    m = compute_metrics(y, np.eye(4)[predicted] * 0.9 + 0.025)
    assert m["sensitivity"] == pytest.approx(m["balanced_accuracy"]) == pytest.approx(5 / 6)
    assert m["precision"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert m["f1_macro"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)


def test_a_class_present_but_never_predicted_counts_against_precision():
    y = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    m = compute_metrics(y, np.eye(3)[predicted] * 0.9 + 0.05)
    assert m["precision"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_binary_sensitivity_and_precision_are_undefined_without_a_malignant_image():
    """A binary test part of benign images only: nothing to detect, as specificity is
    undefined without a benign image (sensitivity and precision used to read 0)."""
    benign_only = compute_metrics(np.zeros(4, int), np.array([[0.9, 0.1]] * 4), 0.5)
    assert math.isnan(benign_only["sensitivity"]) and math.isnan(benign_only["precision"])
    assert benign_only["f1_macro"] == benign_only["accuracy"] == benign_only["specificity"] == 1.0


def test_binary_precision_still_counts_0_when_malignant_images_are_never_called():
    missed = compute_metrics(np.array([0, 0, 1, 1]), np.array([[0.9, 0.1]] * 4), 0.5)
    assert missed["precision"] == missed["sensitivity"] == 0.0
    assert missed["f1_macro"] == pytest.approx((2 / 3 + 0) / 2)
