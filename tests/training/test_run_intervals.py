"""What a run's bootstrap intervals rest on: the units drawn and the resamples each one used."""

from __future__ import annotations

import json
import shutil

import numpy as np
import yaml

from napari_pathreview.training import run_recipe

ONE_EPOCH = [{"name": "all", "epochs": 1}]


def test_the_external_test_resamples_the_patients_its_manifest_names(
    tiny_recipe, shared_data, tmp_path
):
    """BreaKHis file names name their patients: the external figures drew single images, as if
    each of a patient's images were another patient, and said nothing of what they drew."""
    from napari_pathreview.io.breakhis import parse_breakhis_name

    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))[::2]
    external = tmp_path / "external.csv"
    labels = {"B": "benign", "M": "malignant"}
    external.write_text(
        "path,label\n" + "".join(f"{p},{labels[p.name.split('_')[1]]}\n" for p in images)
    )
    recipe = tiny_recipe(phases=ONE_EPOCH)
    recipe["data"]["external_test"] = str(external)
    result = run_recipe(recipe, out_dir=tmp_path / "runs")
    patients = {parse_breakhis_name(p.name).patient_id for p in images}
    assert len(patients) < len(images)
    entry = result.metrics["external_test"]["all"]
    assert entry["ci_resampled"] == f"{len(patients)} patients"
    assert entry["ci_n_resamples"]["accuracy"] == entry["ci_n_drawn"] == 50


def test_an_external_manifest_without_patients_is_resampled_by_image(shared_data, tmp_path):
    """BACH names no patients: every image stands alone, and the bootstrap says it drew images."""
    from napari_pathreview.training.datasets import from_csv
    from napari_pathreview.training.evaluation import external_groups
    from napari_pathreview.training.statistics import resampled_unit

    rows = []
    for i, path in enumerate(sorted((shared_data / "breakhis").glob("SOB_*.png"))[:6]):
        shutil.copy(path, tmp_path / f"iv{i:03d}.png")  # BACH's own naming
        rows.append(f"iv{i:03d}.png,Invasive\n")
    (tmp_path / "bach.csv").write_text("path,label\n" + "".join(rows))
    samples = from_csv(tmp_path / "bach.csv")
    assert external_groups(samples, "patient") is None
    assert resampled_unit(external_groups(samples, "patient")) == "images"
    named = tmp_path / "named.csv"
    named.write_text(
        "path,label,patient_id\n" + "".join(f"{r[:-1]},p{i // 3}\n" for i, r in enumerate(rows))
    )
    assert external_groups(from_csv(named), "patient") == ["p0"] * 3 + ["p1"] * 3


def test_cli_marks_an_interval_that_rests_on_few_of_the_resamples(tiny_recipe, tmp_path, capsys):
    """A test part with one malignant patient (seed 1, 10 % test): a resample without that
    patient has no ROC curve, so the AUC interval rests on about two thirds of the resamples,
    conditional on drawing that patient; neither metrics.json nor the table said so."""
    from napari_pathreview.cli import main

    recipe = tiny_recipe(phases=ONE_EPOCH, seed=1, split={"test_fraction": 0.1})
    recipe["eval"] = {"bootstrap": 200}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--out", str(tmp_path / "runs")]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    malignant = {
        row["patient_id"]
        for row in json.loads((run_dir / "splits.json").read_text())["folds"][0]["test"]
        if row["label"] == "malignant"
    }
    assert len(malignant) == 1
    used = test["ci_n_resamples"]
    assert test["ci_n_drawn"] == used["accuracy"] == 200
    assert 0.5 * 200 < used["roc_auc"] < 0.85 * 200
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert lines["roc_auc"].endswith(f"* {used['roc_auc']}")
    assert not lines["accuracy"].endswith(str(used["accuracy"]))
    assert lines["*"].startswith("* the interval rests on this many of the 200 resamples")


def test_each_interval_counts_the_resamples_it_rests_on():
    """Twenty patients, one malignant: a resample leaves that patient out about e^-1 of the
    time, and then has no AUC, sensitivity, PR-AUC or (nothing called malignant either)
    precision; accuracy is defined on every resample."""
    from napari_pathreview.training.ci_counts import thin_intervals
    from napari_pathreview.training.statistics import Resampling, bootstrap_report

    patients = np.repeat(np.arange(20), 5)
    y = (patients == 0).astype(int)
    p = np.where(y == 1, 0.8, 0.3)
    report = bootstrap_report(y, np.stack([1 - p, p], 1), 0.5, Resampling(400, 0, patients))
    used = report["ci_n_resamples"]
    assert report["ci_n_drawn"] == used["accuracy"] == used["specificity"] == 400
    assert used["roc_auc"] == used["sensitivity"] == used["pr_auc"] == used["precision"]
    assert 0.55 < used["roc_auc"] / 400 < 0.72  # 1 - (19/20)^20 = 0.64
    assert set(thin_intervals(report)) == {"precision", "sensitivity", "roc_auc", "pr_auc"}


def test_an_interval_missing_only_a_few_resamples_is_not_marked():
    """Five malignant patients of twenty: fewer than 1 % of the resamples draw none of them."""
    from napari_pathreview.training.ci_counts import thin_intervals
    from napari_pathreview.training.statistics import Resampling, bootstrap_report

    patients = np.repeat(np.arange(20), 5)
    y = (patients < 5).astype(int)
    p = np.where(y == 1, 0.8, 0.3)
    report = bootstrap_report(y, np.stack([1 - p, p], 1), 0.5, Resampling(200, 0, patients))
    assert report["ci_n_resamples"]["roc_auc"] > 0.97 * 200
    assert thin_intervals(report) == []
