"""End-to-end training on real images: learning, resuming, registering, CLI, reviews, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_pathreview.training import run_recipe

NO_AUGMENT = {"hflip": False, "vflip": False, "rot90": False, "random_crop": False}


def _predict(model, paths, size: int, resize: int) -> np.ndarray:
    """Class indices the registered model predicts, preprocessing as training did."""
    from torchvision.transforms import v2

    from napari_pathreview.training.datasets import Sample, prepare_image

    card = model.card
    batch = []
    for path in paths:
        pixels = prepare_image(Sample(path, "", ""), resize).pixels
        tensor = v2.CenterCrop(size)(torch.from_numpy(pixels).permute(2, 0, 1)).float() / 255
        batch.append(v2.Normalize(list(card.mean), list(card.std))(tensor))
    with torch.no_grad():
        return model(torch.stack(batch)).argmax(1).numpy()


def test_tiny_recipe_beats_chance_on_its_training_data_and_registers_a_loadable_model(
    tiny_recipe, tmp_path
):
    from napari_pathreview.registry import ModelRegistry

    recipe = tiny_recipe(
        augment=NO_AUGMENT,
        phases=[{"name": "all", "epochs": 8}],
        optim={"batch_size": 16, "lr": 0.002},
        register={"name": "tiny"},
    )
    result = run_recipe(recipe, out_dir=tmp_path)
    assert result.registered == "tiny@1"
    train = json.loads((result.run_dir / "splits.json").read_text())["folds"][0]["train"]
    labels = np.array([row["label"] == "malignant" for row in train], dtype=int)
    model = ModelRegistry().load("tiny")
    predicted = _predict(model, [row["path"] for row in train], 32, 36)
    majority = max(labels.mean(), 1 - labels.mean())
    assert (predicted == labels).mean() > majority + 0.1
    card = model.card
    assert card.classes == ("benign", "malignant") and 0.0 <= card.threshold <= 1.0
    assert "grouped by patient" in card.split_protocol and len(card.data_fingerprint) == 64
    assert set(card.metrics["test"]["ci95"]) >= {"balanced_accuracy", "roc_auc", "ece"}
    assert card.recipe["name"] == "tiny" and card.input_size == (3, 32, 32)
    for name in ("metrics.json", "curves.png", "roc.png", "pr.png", "confusion.png"):
        assert (result.run_dir / name).is_file()


def _kill_after(epochs: int):
    def progress(entry: dict) -> None:
        if entry["epoch"] == epochs:
            raise KeyboardInterrupt("simulated kill")

    return progress


def test_resume_after_a_kill_reaches_the_same_weights_as_an_uninterrupted_run(
    tiny_recipe, tmp_path
):
    recipe = tiny_recipe(
        deterministic=True,
        phases=[
            {"name": "head", "epochs": 1, "train": ["head"]},
            {"name": "all", "epochs": 2, "lr": 0.001},
        ],
        augment={"mixup": 0.2, "rotate": 10},
        ema={"enabled": True, "decay": 0.9},
        optim={"batch_size": 16, "sampler": "weighted"},
        schedule={"name": "cosine"},
        data={**tiny_recipe()["data"], "subset": 32},
    )
    whole = run_recipe(recipe, out_dir=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, out_dir=tmp_path / "killed", progress=_kill_after(2))
    killed_dir = next((tmp_path / "killed").iterdir())
    assert not (killed_dir / "metrics.json").exists()
    resumed = run_recipe(None, resume=killed_dir)
    a = torch.load(whole.run_dir / "fold0" / "last.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "fold0" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert resumed.metrics["test"]["accuracy"] == whole.metrics["test"]["accuracy"]


def test_a_training_part_one_image_past_a_full_batch_trains(tiny_recipe, tmp_path):
    """A last batch of a single image cannot pass BatchNorm in training mode; one image more
    than a multiple of the batch size is an ordinary data set size and must train."""
    from napari_pathreview.training.recipe import load_recipe
    from napari_pathreview.training.run_data import discover
    from napari_pathreview.training.splits import make_splits

    split = {"protocol": "image_holdout", "val_fraction": 0.15, "test_fraction": 0.15}
    recipe = tiny_recipe(phases=[{"name": "all", "epochs": 1}], split=split)
    samples = discover(load_recipe(recipe), tmp_path)
    labels = [s.label == "malignant" for s in samples]
    plan = make_splits(labels, [s.patient_id for s in samples], **split, seed=0)
    n_train = len(plan.folds[0].train)
    recipe["optim"] = {**recipe["optim"], "batch_size": n_train - 1}
    result = run_recipe(recipe, out_dir=tmp_path / "runs")
    assert result.metrics["folds"][0]["sizes"]["train"] == n_train


def test_cli_trains_kfold_from_a_recipe_file_with_overrides(
    tiny_recipe, shared_data, tmp_path, capsys
):
    from napari_pathreview.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe()))
    external = tmp_path / "bach.csv"  # BACH-style labels fold into benign / malignant
    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))[::8]
    # blurry as stored (predict flags it), sharp on the 256-px canvas: not in the QC-passed part
    blurry = shared_data / "breakhis" / "SOB_B_A-14-22549CD-40-019.png"
    images = [p for p in images if p != blurry] + [blurry]
    external.write_text(
        "path,label\n"
        + "".join(f"{p},{'Invasive' if 'SOB_M_' in p.name else 'Normal'}\n" for p in images)
    )
    status = main(
        [
            "train",
            str(path),
            "--set",
            "split.protocol=patient_kfold",
            "--set",
            "split.folds=3",
            "--set",
            "phases.*.epochs=1",
            "--set",
            f"data.external_test={external}",
            "--out",
            str(tmp_path / "runs"),
        ]
    )
    assert status == 0
    assert "balanced_accuracy" in capsys.readouterr().out
    run_dir = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "patient_kfold" and metrics["leaky"] is False
    assert len(metrics["folds"]) == 3 and metrics["test"]["pooled_out_of_fold"] is True
    assert set(metrics["kfold_summary"]["balanced_accuracy"]) == {"mean", "sd", "n_folds"}
    assert sum(f["sizes"]["test"] for f in metrics["folds"]) == metrics["n_images"]
    assert metrics["external_test"]["all"]["n"] == len(images)
    from napari_pathreview.inference.preprocess import decode
    from napari_pathreview.stain import assess_quality

    predict_passes = [assess_quality(decode(p, min_side=32).rgb).passed for p in images]
    assert predict_passes[-1] is False  # the blurry image
    assert metrics["external_test"]["qc_passed"]["n"] == sum(predict_passes)


def test_a_patient_split_runs_ci_resample_the_test_patients(tiny_recipe, tmp_path):
    """BreaKHis has several images per patient; metrics.json says what the bootstrap drew."""
    recipe = tiny_recipe(phases=[{"name": "all", "epochs": 1}])
    result = run_recipe(recipe, out_dir=tmp_path)
    test = json.loads((result.run_dir / "splits.json").read_text())["folds"][0]["test"]
    patients = {row["patient_id"] for row in test}
    assert len(patients) < len(test)
    assert result.metrics["test"]["ci_resampled"] == f"{len(patients)} patients"


def test_metrics_count_the_groups_a_patient_stem_split_and_its_bootstrap_draw(
    tiny_recipe, tmp_path
):
    """With split.group_by: patient_stem, slides 14-22549AB, CD and G are one group: metrics.json
    counted them as three (n_patients) and the bootstrap's "N patients" named stems, so the two
    figures disagreed with nothing saying why."""
    recipe = tiny_recipe(phases=[{"name": "all", "epochs": 1}], split={"group_by": "patient_stem"})
    result = run_recipe(recipe, out_dir=tmp_path)
    fold = json.loads((result.run_dir / "splits.json").read_text())["folds"][0]
    patients = {row["patient_id"] for part in ("train", "val", "test") for row in fold[part]}
    test_stems = {_stem(row["patient_id"]) for row in fold["test"]}
    metrics = result.metrics
    assert metrics["n_patients"] == len(patients)
    assert metrics["group_by"] == "patient_stem"
    assert metrics["n_groups"] == len({_stem(p) for p in patients}) < len(patients)
    assert metrics["test"]["ci_resampled"] == f"{len(test_stems)} patient_stem groups"


def _stem(patient: str) -> str:
    return patient.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_cli_reports_a_bad_recipe_without_a_traceback(tmp_path, capsys):
    from napari_pathreview.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("data: {source: folder, root: x}\noptim: {lrr: 1}\n")
    assert main(["train", str(path)]) == 2
    assert "lrr" in capsys.readouterr().err


def test_from_reviews_trains_on_pathologist_labels_with_disagreement_weights(
    tiny_recipe, shared_data, tmp_path
):
    from napari_pathreview.review import ReviewStore
    from napari_pathreview.training.datasets import from_csv

    db = tmp_path / "reviews.sqlite"
    store = ReviewStore(f"sqlite:///{db}")
    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))[::3]
    for i, path in enumerate(images):
        truth = "malignant" if "SOB_M_" in path.name else "benign"
        sha = store.add_image(path, "histology")
        agrees = i % 4 != 0
        store.add_review(sha, "dr-a", truth, agrees_with_model=agrees)
    recipe = tiny_recipe(
        phases=[{"name": "all", "epochs": 1}],
        split={"protocol": "image_holdout"},
        data={"source": "reviews", "image_size": 32, "resize": 36, "disagreement_weight": 3.0},
    )
    result = run_recipe(recipe, out_dir=tmp_path / "runs", from_reviews=str(db))
    assert result.metrics["n_images"] == len(images)
    manifest = from_csv(result.run_dir / "reviews_manifest.csv")
    assert sorted({s.weight for s in manifest}) == [1.0, 3.0]
    assert result.metrics["leaky"] is True and "leak" in result.metrics["split_protocol"]


def test_cli_from_reviews_without_db_trains_on_the_default_store_not_the_recipe_data(
    tiny_recipe, shared_data, tmp_path, isolated_home
):
    """README: `pathreview train RECIPE --from-reviews` retrains a recipe that has its own
    data.root on the pathologists' labels in $PATHREVIEW_HOME's review store."""
    import shutil

    from napari_pathreview.review import ReviewStore

    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))
    own_data = tmp_path / "labels.csv"  # the recipe's own manifest: every image
    own_data.write_text(
        "path,label\n"
        + "".join(f"{p},{'malignant' if 'SOB_M_' in p.name else 'benign'}\n" for p in images)
    )
    reviewed = images[::3]
    with ReviewStore() as store:  # the default store, in the isolated home
        for path in reviewed:
            sha = store.add_image(path, "histology")
            label = "malignant" if "SOB_M_" in path.name else "benign"
            store.add_review(sha, "dr-a", label, agrees_with_model=True)
    recipe = tiny_recipe(
        phases=[{"name": "all", "epochs": 1}],
        data={**tiny_recipe()["data"], "source": "csv", "root": str(own_data)},
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    exe = shutil.which("pathreview", path=str(Path(sys.executable).parent)) or "pathreview"
    result = subprocess.run(
        [exe, "train", str(path), "--from-reviews", "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_images"] == len(reviewed) < len(images)
    assert (run_dir / "reviews_manifest.csv").is_file()


DDP_SCRIPT = """
import json, sys, torch
from pathlib import Path
torch.set_num_threads(1)
from napari_pathreview.training import run_recipe
recipe = json.loads(sys.argv[1])
result = run_recipe(recipe, out_dir=sys.argv[2])
rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
Path(sys.argv[3], f"rank{rank}.json").write_text(json.dumps(
    {"rank": rank, "world": world, "run_dir": str(result.run_dir)}))
torch.distributed.destroy_process_group()
"""


def test_ddp_with_two_gloo_processes_on_cpu_trains_one_run(tiny_recipe, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    recipe = tiny_recipe(
        phases=[{"name": "all", "epochs": 1}],
        data={**tiny_recipe()["data"], "subset": 24},
        register={"name": "ddp"},
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reports = tmp_path / "reports"
    reports.mkdir()
    done = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            json.dumps(recipe),
            str(tmp_path / "runs"),
            str(reports),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads(p.read_text()) for p in sorted(reports.glob("rank*.json"))]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    assert len({r["run_dir"] for r in ranks}) == 1  # both ranks share one run folder
    run_dir = Path(ranks[0]["run_dir"])
    assert json.loads((run_dir / "metrics.json").read_text())["registered"] == "ddp@1"


def test_a_threshold_youden_could_not_choose_is_reported_as_the_fallback(png_tree, tmp_path):
    """One validation image has no ROC curve: the threshold is 0.5, and metrics.json used to
    call it youden_on_validation all the same."""
    recipe = {
        "data": {"source": "folder", "root": str(png_tree), "image_size": 32, "resize": 36},
        "split": {"val_fraction": 0.08, "test_fraction": 0.3},
        "phases": [{"name": "all", "epochs": 1}],
        "schedule": {"name": "none"},
        "eval": {"bootstrap": 10},
        "register": {"enabled": False},
    }
    result = run_recipe(recipe, out_dir=tmp_path)
    assert result.metrics["folds"][0]["sizes"]["val"] == 1
    assert result.metrics["threshold"] == 0.5
    assert result.metrics["threshold_rule"].startswith("0.5: every validation part held one class")


def test_train_prints_per_fold_figures_as_mean_and_sd_not_json():
    from napari_pathreview.training.cli import fold_summary_line

    summary = {
        "balanced_accuracy": {"mean": 0.5306, "sd": 0.1431, "n_folds": 3},
        "f1_macro": {"mean": 0.4946, "sd": 0.1756, "n_folds": 3},
        "roc_auc": {"mean": None, "sd": None, "n_folds": 0},
    }
    assert fold_summary_line(summary) == (
        "per fold (mean ± sd over 3 folds): balanced_accuracy 0.531 ± 0.143, "
        "f1_macro 0.495 ± 0.176, roc_auc n/a"
    )


def test_train_says_what_the_table_was_scored_on_and_decided_at():
    """A k-fold run's table is pooled out of fold, at the folds' mean validation threshold:
    train printed the figures without either."""
    from napari_pathreview.training.cli import scored_on_line

    metrics = {
        "classes": ["benign", "malignant"],
        "threshold": 0.4213,
        "threshold_rule": "youden_on_validation",
        "folds": [{}, {}, {}],
        "test": {"n": 120, "pooled_out_of_fold": True},
    }
    assert scored_on_line(metrics) == (
        "test:       120 images, pooled out of 3 folds; decision P(malignant) >= 0.421 "
        "(youden_on_validation); ece lower is better"
    )
    argmax = {**metrics, "threshold": None, "folds": [{}], "test": {"n": 40}}
    assert "40 images, one test part; decision argmax" in scored_on_line(argmax)
