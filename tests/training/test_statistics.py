"""Bootstrap CIs, k-fold summaries, Friedman + Nemenyi (Demšar 2006) and the CD plot."""

import numpy as np
import pytest
from scipy import stats

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.training.metrics import SCALAR_METRICS, compute_metrics
from napari_pathreview.training.statistics import (
    Resampling,
    bootstrap_ci,
    friedman_nemenyi,
    plot_critical_difference,
    summarize_folds,
)


def test_bootstrap_interval_brackets_the_point_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 60), 0, 1)
    probs = np.stack([1 - p, p], 1)
    ci = bootstrap_ci(y, probs, 0.5, Resampling(100, 3))
    point = compute_metrics(y, probs, 0.5)
    for name in ("accuracy", "balanced_accuracy", "roc_auc"):
        low, high = ci[name]
        assert low <= point[name] <= high and high - low > 0
    assert ci == bootstrap_ci(y, probs, 0.5, Resampling(100, 3))


def test_a_patient_bootstrap_draws_whole_patients():
    """Ten images of each of eight patients, each patient all right or all wrong: there is
    as much evidence as eight images, and the interval must say so."""
    correct = np.repeat([1, 1, 1, 1, 0, 0, 0, 0], 10)
    y = np.tile([0, 1], 40)
    p = np.where(correct == 1, y, 1 - y) * 0.8 + 0.1
    probs = np.stack([1 - p, p], 1)
    patients = np.repeat([f"p{i}" for i in range(8)], 10)
    by_image = bootstrap_ci(y, probs, 0.5, Resampling(300, 0))["accuracy"]
    by_patient = bootstrap_ci(y, probs, 0.5, Resampling(300, 0, patients))["accuracy"]
    assert by_patient[1] - by_patient[0] > 2 * (by_image[1] - by_image[0])
    assert by_patient[0] <= 0.5 <= by_patient[1]


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images whose labels are drawn from the model's own P(malignant): a calibrated model."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, n)
    return (rng.random(n) < p).astype(int), np.stack([1 - p, p], 1)


def test_a_calibrated_models_ece_lies_inside_its_own_interval():
    """The resamples' binned ECE sits above the figure (duplicated images make the bins'
    accuracies noisier): the percentile interval was [0.026, 0.063] around an ECE of 0.021."""
    y, probs = _calibrated(500, seed=12)
    point = compute_metrics(y, probs, 0.5)["ece"]
    low, high = bootstrap_ci(y, probs, 0.5, Resampling(200, 0))["ece"]
    assert point == pytest.approx(0.0209, abs=1e-4)
    assert low < point < high and high - low > 0.02


@pytest.mark.parametrize("seed", range(4))
def test_every_reported_figure_lies_inside_its_interval(seed):
    y, probs = _calibrated(300, seed)
    patients = np.arange(300) // 3
    point = compute_metrics(y, probs, 0.4)
    ci = bootstrap_ci(y, probs, 0.4, Resampling(100, seed, patients))
    outside = [name for name in SCALAR_METRICS if not ci[name][0] <= point[name] <= ci[name][1]]
    assert outside == []


def test_an_interval_keeps_the_resamples_spread_and_stays_within_0_and_1():
    from napari_pathreview.training.statistics import centred_interval

    resampled = np.linspace(0.02, 0.06, 101)  # median 0.04, percentiles 0.021 and 0.059
    low, high = centred_interval(resampled, 0.01)
    assert low == 0.0 and high == pytest.approx(0.01 + 0.019)
    assert centred_interval(resampled, float("nan")) == pytest.approx((0.021, 0.059))
    assert all(map(np.isnan, centred_interval([], 0.5)))


def test_resamples_without_a_malignant_patient_do_not_widen_a_perfect_models_intervals():
    """Twenty patients, three malignant, a perfect model: one resample in twenty-five draws no
    malignant patient. Those scored sensitivity and precision 0 and macro F1 0.5, so the
    intervals read [0, 1] and [0.5, 1] for a model that never erred."""
    patients = np.repeat(np.arange(20), 5)
    y = (patients < 3).astype(int)
    p = np.where(y == 1, 0.9, 0.1)
    ci = bootstrap_ci(y, np.stack([1 - p, p], 1), 0.5, Resampling(400, 0, patients))
    for name in ("sensitivity", "precision", "f1_macro", "specificity", "roc_auc"):
        assert ci[name] == (1.0, 1.0), name


def test_fold_summary_is_mean_and_sample_sd():
    folds = [
        {"accuracy": 0.5, "roc_auc": 0.6},
        {"accuracy": 0.7, "roc_auc": None},
        {"accuracy": 0.9, "roc_auc": 0.8},
    ]
    summary = summarize_folds(folds)
    assert summary["accuracy"]["mean"] == pytest.approx(0.7)
    assert summary["accuracy"]["sd"] == pytest.approx(0.2)
    assert summary["roc_auc"]["n_folds"] == 2


def test_friedman_matches_scipy_and_critical_difference_matches_demsar_table():
    scores = np.array(
        [[0.9, 0.8, 0.7], [0.85, 0.8, 0.6], [0.92, 0.7, 0.75], [0.88, 0.82, 0.7], [0.9, 0.85, 0.8]]
    )
    result = friedman_nemenyi(scores, ["a", "b", "c"])
    statistic, p = stats.friedmanchisquare(*scores.T)
    assert result.statistic == pytest.approx(statistic) and result.p_value == pytest.approx(p)
    assert result.average_ranks[0] == pytest.approx(1.0)
    # Demšar (2006) Table 5(a): q_0.05 = 2.343 for k = 3
    assert result.critical_difference == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 5)), rel=1e-3)
    assert result.pairwise_p[0][2] < 0.05 < result.pairwise_p[0][1]


def test_friedman_needs_three_models(tmp_path):
    with pytest.raises(InvalidInputError, match="3 models"):
        friedman_nemenyi(np.ones((4, 2)), ["a", "b"])


def test_critical_difference_plot_is_written(tmp_path):
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.85, 0.8, 0.6, 0.65], [0.9, 0.7, 0.75, 0.5]])
    result = friedman_nemenyi(scores, ["a", "b", "c", "d"])
    path = plot_critical_difference(result, tmp_path / "cd.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_runs_ranks_models_over_the_same_folds(tmp_path):
    import json

    from napari_pathreview.training.statistics import compare_runs

    runs = []
    for name, base in (("a", 0.9), ("b", 0.7), ("c", 0.5)):
        run = tmp_path / name
        run.mkdir()
        folds = [{"test": {"balanced_accuracy": base + 0.01 * i}} for i in range(5)]
        run.joinpath("metrics.json").write_text(
            json.dumps({"recipe": name, "split_protocol": "patient_kfold: 5-fold", "folds": folds})
        )
        runs.append(run)
    result = compare_runs(runs, plot=tmp_path / "cd.png")
    assert result.names == ("a", "b", "c") and result.average_ranks == (1.0, 2.0, 3.0)
    assert (tmp_path / "cd.png").is_file()


@pytest.fixture
def tiny_run(tiny_recipe, tmp_path):
    """A real 3-fold run of the tiny recipe at a learning rate, on a subset of the images."""
    from napari_pathreview.training import run_recipe

    def run(lr: float, subset: int):
        recipe = tiny_recipe(
            phases=[{"name": "all", "epochs": 1}],
            optim={"batch_size": 16, "lr": lr},
            split={"protocol": "patient_kfold", "folds": 3},
            data={**tiny_recipe()["data"], "subset": subset},
        )
        return run_recipe(recipe, out_dir=tmp_path / "runs").run_dir

    return run


def test_compare_runs_of_one_recipe_names_them_by_their_folders(tiny_run):
    from napari_pathreview.training.statistics import compare_runs

    runs = [tiny_run(lr, 30) for lr in (0.003, 0.001, 0.0003)]
    result = compare_runs(runs)
    assert result.names == tuple(r.name for r in runs) and len(set(result.names)) == 3


def test_compare_runs_refuses_a_run_whose_folds_hold_other_images(tiny_run):
    """Same protocol, fold count and seed, but another data.subset: fold k tests other images,
    so pairing its scores with the first run's would compare unrelated numbers."""
    from napari_pathreview.training.statistics import compare_runs

    first, other = tiny_run(0.003, 30), tiny_run(0.003, 24)
    with pytest.raises(InvalidInputError, match=rf"{other.name}: fold 0 tests other images"):
        compare_runs([first, other, first])
