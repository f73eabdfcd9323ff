"""Lesion-aware recipes end to end on small real PNG files: train, score maps, register, explain."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_pathreview.training import run_recipe
from napari_pathreview.training.patches import rois_mask
from napari_pathreview.training.recipe import RecipeError

RECIPES = Path(__file__).resolve().parents[2] / "training"
SIDE = 64


def write_lesion_set(folder: Path, n: int = 12, seed: int = 0, pairs: bool = False) -> list[dict]:
    """Grey 'mammograms' (textured tissue); half hold a bright disc lesion, circled as the ROI.

    ``pairs``: films 2k and 2k + 1 are one woman's two breasts (one normal, one with the
    lesion), as in MIAS; else every film is a woman of its own.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image = np.clip(rng.normal(90, 12, (SIDE, SIDE)), 30, 255).astype(np.uint8)
        row = {
            "path": f"img{i:02d}.png",
            "label": "normal",
            "patient_id": str(i // 2 if pairs else i),
            "roi_row": "",
            "roi_col": "",
            "roi_radius": "",
        }
        if i % 2:
            r, c = (int(v) for v in rng.integers(18, SIDE - 18, 2))
            cv2.circle(image, (c, r), 8, 220, -1)
            row.update(label="lesion", roi_row=r, roi_col=c, roi_radius=9)
        cv2.imwrite(str(folder / row["path"]), image)
        rows.append(row)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def lesion_recipe(root: str, **lesion) -> dict:
    return {
        "name": "tiny_lesion",
        "seed": 0,
        "modality": "mammogram",
        "data": {"source": "csv", "root": root, "task": "lesion"},
        "split": {"protocol": "patient_kfold", "folds": 2, "val_fraction": 0.25},
        "model": {"architecture": "test_resnet"},
        "optim": {"batch_size": 32, "lr": 0.005},
        "schedule": {"name": "none"},
        "augment": {"rot90": True, "vflip": True},
        "phases": [{"name": "all", "epochs": 2}],
        "eval": {"bootstrap": 20},
        "lesion": {
            "enabled": True,
            "patch_size": 16,
            "stride": 8,
            "context": 2,
            "margin": 2,
            "negative_class": "normal",
            "mil_epochs": 3,
            **lesion,
        },
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-fold lesion run with the breast intensity rule, registered (shared by the tests
    that inspect it)."""
    base = tmp_path_factory.mktemp("lesion")
    write_lesion_set(base / "data")
    recipe = lesion_recipe(str(base / "data" / "labels.csv"))
    recipe["data"]["intensity"] = "breast"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(base / "home"))
        result = run_recipe(recipe, out_dir=base / "runs")
    return result, base


def test_lesion_run_reports_pooled_out_of_fold_metrics_and_map_scores(trained):
    result, _ = trained
    metrics = result.metrics
    assert metrics["lesion_aware"] and metrics["test"]["pooled_out_of_fold"]
    assert metrics["n_images"] == 12 and not metrics["leaky"]
    assert set(metrics["test"]["ci95"]) >= {"roc_auc", "balanced_accuracy"}
    # the bootstrap draws whole women, as image runs draw patients
    assert metrics["test"]["ci_resampled"] == f"{metrics['n_patients']} patients"
    iou = metrics["maps_vs_roi"]["patch_map"]["iou"]
    assert iou["n"] == 6 and 0.0 <= iou["mean"] <= 1.0
    assert metrics["lesion_classes_at_roi"] is None  # one lesion class: nothing to separate
    assert metrics["lesion_detection"]["pooled"]["n_images"] == metrics["n_images"]
    ceiling = metrics["maps_vs_roi"]["perfect_patch_map"]["iou"]
    assert ceiling["n"] == 6 and 0.0 < ceiling["mean"] <= 1.0
    assert (result.run_dir / "fold0" / "embeddings.zarr").is_dir()
    assert json.loads((result.run_dir / "metrics.json").read_text())["registered"]


def test_a_binary_lesion_run_thresholds_by_youden_on_validation_as_image_runs_do(trained):
    from napari_pathreview.registry import ModelRegistry
    from napari_pathreview.training.metrics import compute_metrics

    result, base = trained
    folds = [json.loads((result.run_dir / f"fold{i}" / "fold.json").read_text()) for i in (0, 1)]
    thresholds = [f["threshold"] for f in folds]
    assert all(0.0 <= t <= 1.0 for t in thresholds)
    metrics = result.metrics
    assert metrics["threshold_rule"] == "youden_on_validation"
    assert metrics["threshold"] == pytest.approx(np.mean(thresholds))
    labels = np.concatenate([f["test_predictions"]["labels"] for f in folds])
    probs = np.concatenate([f["test_predictions"]["probs"] for f in folds])
    scored = compute_metrics(labels, probs, metrics["threshold"])
    assert metrics["test"]["balanced_accuracy"] == pytest.approx(scored["balanced_accuracy"])
    card = ModelRegistry(base / "home" / "models").card(*result.registered.split("@"))
    assert card.threshold == folds[card.metrics["registered_fold"]]["threshold"]


def test_registered_model_explains_an_image_with_patch_and_attention_maps(trained):
    from napari_pathreview.explain.metrics import roi_scores
    from napari_pathreview.inference.mil_maps import explain_mil
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.registry import ModelRegistry

    result, base = trained
    registry = ModelRegistry(base / "home" / "models")
    predictor = Predictor.from_registry(
        result.registered, registry=registry, device="cpu", channels_last=False
    )
    assert predictor.card.architecture == "patch_mil"
    assert predictor.spec.intensity == "breast"  # the images are seen as training saw them
    image = cv2.imread(str(base / "data" / "img01.png"))
    explained = explain_mil(predictor, image[..., ::-1].copy())
    assert explained.patch_map.shape == explained.attention_map.shape == (SIDE, SIDE)
    assert np.isclose(explained.probs.sum(), 1.0, atol=1e-4)
    row = next(
        r
        for r in csv.DictReader((base / "data" / "labels.csv").read_text().splitlines())
        if r["path"] == "img01.png"
    )
    mask = rois_mask(
        [(float(row["roi_row"]), float(row["roi_col"]), 9.0)], (SIDE, SIDE), 1.0, "img01"
    )
    scores = roi_scores(explained.patch_map, mask)  # scored like a CAM
    assert set(scores) == {"iou", "dice", "pointing", "energy"}


def test_an_ensemble_run_registers_the_mean_of_its_fold_models(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from napari_pathreview.inference.mil_maps import explain_mil
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.training.lesion import build_patch_model
    from napari_pathreview.training.recipe import load_recipe

    write_lesion_set(tmp_path / "data")
    monkeypatch.setenv("PATHREVIEW_HOME", str(tmp_path / "home"))
    recipe = lesion_recipe(str(tmp_path / "data" / "labels.csv"), pooling="topk", topk=0.1)
    recipe["register"] = {"select": "ensemble"}
    result = run_recipe(recipe, out_dir=tmp_path / "runs")

    predictor = Predictor.from_registry(result.registered, device="cpu", channels_last=False)
    assert predictor.card.metrics["selection"] == "ensemble"
    assert predictor.card.metrics["registered_folds"] == [0, 1]
    assert predictor.model.members == 2
    rgb = cv2.imread(str(tmp_path / "data" / "img01.png"))[..., ::-1].copy()
    folds = []
    for i in range(2):  # each fold's own weights, as the run saved them
        fold = build_patch_model(load_recipe(recipe), 2, SIDE, predictor.model.head.negative_class)
        fold.load_state_dict(load_file(str(result.run_dir / f"fold{i}" / "selected.safetensors")))
        folds.append(fold.eval())
    x = predictor.prepare([rgb], predictor.spec.uncropped(), [None])
    expected = np.mean([fold.explain(x.float()).probs[0].numpy() for fold in folds], axis=0)
    np.testing.assert_allclose(explain_mil(predictor, rgb).probs, expected, atol=1e-5)
    cam = predictor.explain(rgb, "gradcam").cam  # Grad-CAM of the ensemble's own decision
    assert cam.shape == rgb.shape[:2] and np.isfinite(cam).all()


def test_a_two_film_run_reports_its_decision_beside_the_single_film_model(tmp_path):
    import subprocess
    import sys

    import yaml

    from napari_pathreview.registry import ModelRegistry

    write_lesion_set(tmp_path / "data", n=16, pairs=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(lesion_recipe(str(tmp_path / "data" / "labels.csv"))))
    script = Path(sys.executable).parent / "pathreview"
    env = {**os.environ, "PATHREVIEW_HOME": str(tmp_path / "home")}
    command = [str(script), "train", str(recipe), "--out", str(tmp_path / "runs")]
    done = subprocess.run(
        [*command, "--set", "lesion.bilateral=true"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "two-film decision (each film against the woman's other film):" in done.stdout
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    decision = metrics["bilateral_decision"]
    assert [f["calibration"]["n_films"] for f in decision["folds"]] == [2, 2]  # one val woman
    assert all(f["calibration"]["fitted"] for f in decision["folds"])
    assert set(decision["test"]["ci95"]) >= {"roc_auc", "balanced_accuracy"}
    assert decision["test"]["ci_resampled"] == f"{metrics['n_patients']} patients"
    assert decision["kfold_summary"]["balanced_accuracy"]["n_folds"] == 2
    # each held-out film's two-film probabilities follow from its own and its partner's
    from napari_pathreview.bilateral import BilateralCalibration, bilateral_probs

    normal = metrics["classes"].index("normal")
    for k in range(2):
        fold = json.loads((run / f"fold{k}" / "fold.json").read_text())
        women = [str(int(Path(p).stem[3:]) // 2) for p in fold["test_predictions"]["paths"]]
        calibration = BilateralCalibration(**fold["bilateral"]["calibration"])
        expected = bilateral_probs(fold["test_predictions"]["probs"], women, normal, calibration)
        np.testing.assert_allclose(fold["bilateral"]["probs"], expected, atol=1e-9)
    # the registered model reads one film: its card keeps its own figures, the decision beside
    name, version = metrics["registered"].split("@")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(tmp_path / "home"))
        card = ModelRegistry().card(name, version)
    assert card.metrics["test"]["roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    assert card.metrics["bilateral_decision"]["test"] == decision["test"]
    # ... and carries the registered fold's calibration, so that predict can read two films
    best = card.metrics["registered_fold"]
    assert card.bilateral == {
        **decision["folds"][best]["calibration"],
        "negative_class": "normal",
        "fitted_on": f"fold {best}'s validation films",
    }
    films = [tmp_path / "data" / f"img{i:02d}.png" for i in (0, 1, 2)]  # woman 1 has one here
    predict = [str(script), "predict", *map(str, films), "--model", metrics["registered"]]
    predict += ["--two-film", "--patients", str(tmp_path / "data" / "labels.csv")]
    read = subprocess.run(
        [*predict, "--out", str(tmp_path / "pred")], capture_output=True, text=True, env=env
    )
    assert read.returncode == 0, read.stderr
    assert f"{films[2]}\ttwo-film\tread alone: no other film of patient " in read.stdout
    with open(tmp_path / "pred" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    one_film = np.asarray([[float(r[f"p_{c}"]) for c in card.classes] for r in rows[:2]])
    expected = bilateral_probs(
        one_film, ["0", "0"], normal, BilateralCalibration.from_dict(card.bilateral)
    )
    for row, other, want in zip(rows[:2], films[1::-1], expected, strict=True):
        assert row["two_film_other"] == str(other)
        got = [float(row[f"two_film_p_{c}"]) for c in card.classes]
        np.testing.assert_allclose(got, want, atol=1e-3)  # the CSV rounds p to 6 digits
        assert row["two_film_label"] == card.classes[int(np.argmax(want))]
    assert rows[2]["two_film_other"] == rows[2]["two_film_label"] == ""
    # re-scored without it, the finished run drops the decision and trains nothing
    rescore = ["--resume", str(run), "--rescore", "--set", "lesion.bilateral=false"]
    again = subprocess.run(
        [str(script), "train", *rescore],
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode == 0, again.stderr
    assert "two-film decision" not in again.stdout
    rescored = json.loads((run / "metrics.json").read_text())
    assert "bilateral_decision" not in rescored
    assert rescored["test"]["roc_auc"] == pytest.approx(metrics["test"]["roc_auc"], abs=1e-6)
    assert "bilateral" not in json.loads((run / "fold0" / "fold.json").read_text())


def test_a_run_scored_under_flips_registers_a_model_that_predicts_under_flips(tmp_path, capsys):
    """Its two-film calibration was fitted on flip-averaged probabilities, so predict reads
    under flips unless told otherwise, and says so when told otherwise."""
    from napari_pathreview.cli import main
    from napari_pathreview.registry import ModelRegistry

    write_lesion_set(tmp_path / "data", n=16, pairs=True)
    recipe = lesion_recipe(str(tmp_path / "data" / "labels.csv"), bilateral=True)
    recipe["eval"]["tta"] = "flips"
    result = run_recipe(recipe, out_dir=tmp_path / "runs")
    card = ModelRegistry().card(*result.registered.split("@"))
    assert card.tta == "flips" and card.bilateral is not None
    films = [str(tmp_path / "data" / f"img{i:02d}.png") for i in (0, 1)]
    argv = ["predict", *films, "--model", result.registered, "--two-film", "--device", "cpu"]
    argv += ["--patients", str(tmp_path / "data" / "labels.csv")]

    def read(*extra: str) -> tuple[list[dict], str]:
        out = tmp_path / f"pred{len(extra)}"
        capsys.readouterr()
        assert main([*argv, *extra, "--out", str(out)]) == 0
        with open(out / "predictions.csv", newline="") as handle:
            return list(csv.DictReader(handle)), capsys.readouterr().err

    rows, stderr = read()
    assert {row["tta"] for row in rows} == {"flips"} and "warning" not in stderr
    rows, stderr = read("--tta", "none")
    assert {row["tta"] for row in rows} == {"none"}
    fitted = "threshold and two-film calibration were fitted under test-time augmentation 'flips'"
    assert fitted in stderr


def test_a_class_without_any_roi_is_refused_before_training(tmp_path):
    from napari_pathreview.training.patches import PatchError

    rows = write_lesion_set(tmp_path / "data")
    for row in rows:
        row.update(roi_row="", roi_col="", roi_radius="")
    with open(tmp_path / "data" / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(PatchError, match="class 'lesion' has 6 image"):
        run_recipe(lesion_recipe(str(tmp_path / "data" / "labels.csv")), out_dir=tmp_path / "r")


def test_cli_prints_a_bad_roi_without_traceback(tmp_path):
    import subprocess
    import sys

    import yaml

    rows = write_lesion_set(tmp_path / "data", n=6)
    rows[1].update(roi_row=500, roi_col=500, roi_radius=5)  # outside the 64² image
    with open(tmp_path / "data" / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(lesion_recipe(str(tmp_path / "data" / "labels.csv"))))
    script = Path(sys.executable).parent / "pathreview"
    done = subprocess.run(
        [str(script), "train", str(recipe), "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "img01.png ROI 0 lies outside the image" in done.stderr
    assert "rows 495–505 and columns 495–505, the image 64 rows × 64 columns" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timm:test_resnet={folder}/absent.safetensors", "absent.safetensors does not exist"),
        ("timm:resnet18={folder}/resnet18.safetensors", "does not fit model encoder 'test_resnet'"),
        ("test_resnet", "use registry:NAME"),
    ],
)
def test_a_frozen_encoder_that_cannot_be_used_is_refused_before_any_image_is_read(
    tmp_path, spec, message
):
    import subprocess
    import sys

    import timm
    import yaml
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet18").state_dict(), str(tmp_path / "resnet18.safetensors"))
    write_lesion_set(tmp_path / "data", n=6)
    (tmp_path / "data" / "img02.png").write_bytes(b"not a png")  # reading it would fail
    recipe = lesion_recipe(
        str(tmp_path / "data" / "labels.csv"), frozen_encoder=spec.format(folder=tmp_path)
    )
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pathreview"), "train", str(tmp_path / "r.yaml"),
         "--out", str(tmp_path / "runs")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert message in done.stderr and "img02" not in done.stderr, done.stderr


def test_a_lesion_run_without_its_encoders_weights_is_refused_before_any_image_is_read(
    tmp_path, offline_hub
):
    import subprocess
    import sys

    import yaml

    write_lesion_set(tmp_path / "data", n=6)
    (tmp_path / "data" / "img02.png").write_bytes(b"not a png")  # reading it would fail
    recipe = lesion_recipe(str(tmp_path / "data" / "labels.csv"))
    recipe["model"]["pretrained"] = True
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    runs = tmp_path / "runs"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pathreview"), "train", str(tmp_path / "r.yaml"),
         "--out", str(runs)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "patch_mil needs pretrained weights for test_resnet" in done.stderr, done.stderr
    assert "img02" not in done.stderr and not runs.exists()


def test_a_frozen_encoder_needs_no_pretrained_weights_for_the_encoder_it_replaces(
    tmp_path, offline_hub
):
    import timm
    from safetensors.torch import save_file

    from napari_pathreview.training.build import require_recipe_weights
    from napari_pathreview.training.lesion import build_patch_model
    from napari_pathreview.training.recipe import load_recipe

    weights = tmp_path / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=0).state_dict(), str(weights))
    recipe = lesion_recipe("labels.csv", frozen_encoder=f"timm:test_resnet={weights}")
    recipe["model"]["pretrained"] = True
    parsed = load_recipe(recipe)
    require_recipe_weights(parsed)
    assert build_patch_model(parsed, 2, SIDE).encoder is not None


def copy_as_if_pretrained(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a finished run whose recipe says its encoder started from ImageNet weights
    (absent here)."""
    import shutil

    import yaml

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    saved["model"]["pretrained"] = True
    (run / "recipe.yaml").write_text(yaml.safe_dump(saved))
    return run


def test_resuming_a_finished_run_needs_no_pretrained_weights(trained, tmp_path, offline_hub):
    result, base = trained
    run = copy_as_if_pretrained(result.run_dir, tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(base / "home"))
        again = run_recipe(None, resume=run)
    assert again.registered == result.registered


@pytest.mark.slow
def test_shipped_mias_recipe_runs_shrunk(shared_data, tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("PATHREVIEW_HOME", str(tmp_path / "home"))
    overrides = [
        "data.subset=24",
        "split.folds=2",
        "phases.*.epochs=1",
        "lesion.mil_epochs=2",
        "lesion.positives_per_image=4",
        "lesion.negatives_per_image=4",
        "eval.bootstrap=20",
        "lesion.stride=32",
        f"data.root={shared_data / 'mias_full'}",
    ]
    result = run_recipe(RECIPES / "mias_lesion_mil.yaml", overrides, out_dir=tmp_path / "runs")
    assert result.metrics["classes"] == ["normal", "benign", "malignant"]
    assert result.metrics["pixel_size"] == 0.4
    assert result.metrics["tta"] == "flips"  # held-out films scored under four views (run 13)
    assert result.metrics["maps_vs_roi"]["patch_map"]["iou"]["n"] >= 1
    at_roi = result.metrics["lesion_classes_at_roi"]
    assert at_roi["classes"] == ["benign", "malignant"] and at_roi["n_images"] >= 1
    assert result.metrics["lesion_detection"]["pooled"]["n_images"] == 24
    two_film = result.metrics["bilateral_decision"]  # the shipped recipe reports it
    assert sum(f["calibration"]["n_films"] for f in two_film["folds"]) >= 2
    assert 0.0 <= two_film["test"]["balanced_accuracy"] <= 1.0
    assert all(fold["patches"]["hard"] > 0 for fold in result.metrics["folds"])  # round 2
    # the registered fold ensemble reads a woman's two films, paired by their MIAS numbers
    from napari_pathreview.registry import ModelRegistry

    card = ModelRegistry().card(*result.registered.split("@"))
    assert card.bilateral["fitted_on"] == "the 2 folds' held-out films"
    films = [shared_data / "mias_full" / f"mdb{n:03d}.png" for n in (1, 2, 3)]
    script = Path(sys.executable).parent / "pathreview"
    command = [str(script), "predict", *map(str, films), "--model", result.registered]
    read = subprocess.run(
        [*command, "--two-film", "--out", str(tmp_path / "pred")], capture_output=True, text=True
    )
    assert read.returncode == 0, read.stderr
    with open(tmp_path / "pred" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["two_film_other"]).name for r in rows] == ["mdb002.png", "mdb001.png", ""]
    p_normal = [float(r["two_film_p_normal"]) for r in rows[:2]]
    assert all(0.0 < p < 1.0 for p in p_normal)


def test_two_film_reading_is_refused_before_any_work_for_a_model_without_its_calibration(
    trained, tmp_path
):
    import subprocess
    import sys

    result, base = trained
    script = Path(sys.executable).parent / "pathreview"
    env = {**os.environ, "PATHREVIEW_HOME": str(base / "home")}
    films = [str(base / "data" / f"img{i:02d}.png") for i in (0, 1)]
    predict = [str(script), "predict", *films, "--model", result.registered]
    for extra, named in [
        (["--two-film"], f"model {result.registered} has no two-film calibration"),
        (["--patients", str(base / "data" / "labels.csv")], "add --two-film"),
    ]:
        done = subprocess.run(
            [*predict, *extra, "--out", str(tmp_path)], capture_output=True, text=True, env=env
        )
        assert done.returncode == 2 and named in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "predictions.csv").exists()


def test_explain_cli_scores_patch_and_attention_maps_beside_the_cam(trained, tmp_path):
    import os
    import subprocess
    import sys

    from napari_pathreview.io.geojson import Roi, write_geojson_rois

    result, base = trained
    corners = np.array([[10.0, 10.0], [10.0, 30.0], [30.0, 30.0], [30.0, 10.0]])
    roi = write_geojson_rois(tmp_path / "roi.geojson", [Roi(corners, "ellipse")])
    script = Path(sys.executable).parent / "pathreview"
    env = {**os.environ, "PATHREVIEW_HOME": str(base / "home")}
    done = subprocess.run(
        [
            str(script),
            "explain",
            str(base / "data" / "img01.png"),
            "--model",
            result.registered,
            "--roi",
            str(roi),
            "--method",
            "gradcam",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    methods = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert methods == ["gradcam", "patch_map", "attention_map"]


def test_shipped_histology_recipe_learns_from_geojson_regions(tmp_path):
    from napari_pathreview.io.geojson import Roi, rois_to_geojson

    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        image = np.full((SIDE, SIDE, 3), 245, np.uint8)  # glass
        image[8:56, 8:56] = (200, 120, 170)  # pink tissue
        label, roi = "benign", ""
        if i % 2:
            label = "malignant"
            r, c = (int(v) for v in rng.integers(14, 34, 2))
            image[r : r + 16, c : c + 16] = (90, 40, 120)  # dark, crowded region
            square = np.array([[r, c], [r, c + 16], [r + 16, c + 16], [r + 16, c]], float)
            roi = json.dumps(rois_to_geojson([Roi(square, "polygon")]))
        cv2.imwrite(str(tmp_path / f"h{i:02d}.png"), image[..., ::-1])
        rows.append(
            {"path": f"h{i:02d}.png", "label": label, "patient_id": str(i), "roi_geojson": roi}
        )
    with open(tmp_path / "regions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    overrides = [
        f"data.root={tmp_path / 'regions.csv'}",
        "split.folds=2",
        "split.val_fraction=0.25",
        "phases.*.epochs=1",
        "model.architecture=test_resnet",
        "lesion.pixel_size=0",
        "lesion.patch_size=16",
        "lesion.stride=16",
        "lesion.context=2",
        "lesion.margin=2",
        "lesion.mil_epochs=2",
        "eval.bootstrap=10",
        "register.enabled=false",
    ]
    result = run_recipe(RECIPES / "histology_lesion_mil.yaml", overrides, out_dir=tmp_path / "r")
    assert result.metrics["classes"] == ["benign", "malignant"]
    assert result.metrics["n_images_with_roi"] == 6
    assert result.metrics["maps_vs_roi"]["patch_map"]["iou"]["n"] == 6


def test_a_topk_model_pools_by_lesion_odds_and_the_registry_rebuilds_it_so(tmp_path):
    from napari_pathreview.registry import ModelRegistry
    from napari_pathreview.training.lesion import build_patch_model
    from napari_pathreview.training.recipe import load_recipe

    recipe = load_recipe(lesion_recipe("labels.csv", pooling="topk", topk=0.05))
    model = build_patch_model(recipe, 3, SIDE, negative_class=1)
    assert model.head.negative_class == 1
    registry = ModelRegistry(tmp_path / "models")
    registry.register(model, {"name": "lesion-topk", "task": "mammogram", "classes": list("abc")})
    rebuilt = registry.load("lesion-topk")
    assert rebuilt.head.negative_class == 1 and rebuilt.head.pooling == "topk"


def test_resuming_a_finished_lesion_run_does_not_register_a_duplicate(trained):
    from napari_pathreview.registry import ModelRegistry

    result, base = trained
    name = result.registered.split("@")[0]
    registry = ModelRegistry(base / "home" / "models")
    before = registry.versions(name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(base / "home"))
        again = run_recipe(None, resume=result.run_dir)
    assert again.registered == result.registered
    assert registry.versions(name) == before


def test_rescore_scores_a_finished_run_again_from_its_saved_folds_without_training(
    trained, tmp_path
):
    import shutil
    import subprocess
    import sys

    result, base = trained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    weights = sorted(run.glob("fold*/selected.safetensors"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    for path in run.glob("fold*/fold.json"):  # stale scores, as from older scoring rules
        record = json.loads(path.read_text())
        for row in record["map_scores"]:
            row["patch_map_iou"] = 0.987
        path.write_text(json.dumps(record))
    script = Path(sys.executable).parent / "pathreview"
    env = {**os.environ, "PATHREVIEW_HOME": str(base / "home")}
    cams = ["--set", "eval.cam_iou=true", "--set", "eval.cam_methods=[gradcam]"]  # scoring only
    done = subprocess.run(
        [str(script), "train", "--resume", str(run), "--rescore", *cams],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert "gradcam" not in result.metrics["maps_vs_roi"]
    assert metrics["maps_vs_roi"]["gradcam"]["iou"]["n"] == 6  # the fold models' own CAMs
    fresh = result.metrics["maps_vs_roi"]["patch_map"]["iou"]["mean"]
    assert metrics["maps_vs_roi"]["patch_map"]["iou"]["mean"] == pytest.approx(fresh)
    assert metrics["test"]["roc_auc"] == pytest.approx(result.metrics["test"]["roc_auc"], abs=1e-6)
    assert metrics["registered"] == result.registered  # not registered again
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # nothing was trained


def test_rescore_with_tta_scores_every_held_out_film_under_the_views_it_names(trained, tmp_path):
    import shutil
    import subprocess
    import sys

    result, base = trained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    script = Path(sys.executable).parent / "pathreview"
    env = {**os.environ, "PATHREVIEW_HOME": str(base / "home")}
    done = subprocess.run(
        [str(script), "train", "--resume", str(run), "--rescore", "--set", "eval.tta=flips"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tta"] == "flips" and result.metrics["tta"] == "none"
    assert yaml_of(run)["eval"]["tta"] == "flips"  # the folder says how it was scored
    for fold in (0, 1):
        before = json.loads((result.run_dir / f"fold{fold}" / "fold.json").read_text())
        after = json.loads((run / f"fold{fold}" / "fold.json").read_text())
        probs = np.asarray(after["test_predictions"]["probs"])
        assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(1), 1.0)
        assert not np.allclose(probs, before["test_predictions"]["probs"])  # the views count
        assert after["test_predictions"]["paths"] == before["test_predictions"]["paths"]
    assert metrics["maps_vs_roi"]["patch_map"]["iou"]["n"] == 6


def yaml_of(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "recipe.yaml").read_text())


def test_rescore_reads_the_saved_models_so_the_pretrained_weights_need_not_be_here(
    trained, tmp_path
):
    result, base = trained
    run = copy_as_if_pretrained(result.run_dir, tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(base / "home"))
        patch.delenv("PATHREVIEW_PRETRAINED_DIR", raising=False)
        again = run_recipe(None, resume=run, rescore=True)
    assert again.metrics["test"]["roc_auc"] == pytest.approx(
        result.metrics["test"]["roc_auc"], abs=1e-6
    )


def test_rescore_names_a_fold_whose_saved_model_is_missing(trained, tmp_path):
    import shutil

    result, base = trained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    (run / "fold1" / "selected.safetensors").unlink()
    before = (run / "fold0" / "fold.json").read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(base / "home"))
        with pytest.raises(RecipeError, match=r"fold1.selected\.safetensors is missing"):
            run_recipe(None, resume=run, rescore=True)
    assert (run / "fold0" / "fold.json").read_text() == before  # refused before any fold


def test_rescore_refuses_to_change_a_training_setting_it_would_not_retrain(trained, tmp_path):
    import shutil

    result, _ = trained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    recipe_before = (run / "recipe.yaml").read_text()
    with pytest.raises(RecipeError, match=r"--rescore --set lesion\.patch_size.*trains nothing"):
        run_recipe(None, ["lesion.patch_size=32"], resume=run, rescore=True)
    assert (run / "recipe.yaml").read_text() == recipe_before  # refused before anything changed


def test_rescore_without_a_finished_run_is_refused(tmp_path):
    import subprocess
    import sys

    script = Path(sys.executable).parent / "pathreview"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\n")
    done = subprocess.run(
        [str(script), "train", str(recipe), "--rescore"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "--rescore" in done.stderr and "--resume" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_histology_lesion_run_normalises_stain_per_fold_and_the_card_carries_the_target(
    tmp_path, monkeypatch
):
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.registry import ModelRegistry

    rows = write_lesion_set(tmp_path / "data", n=8)
    rng = np.random.default_rng(1)
    for row in rows:  # grey → pink/purple H&E-like colour, a different tint per image
        grey = cv2.imread(str(tmp_path / "data" / row["path"]), cv2.IMREAD_GRAYSCALE) / 255.0
        tint = np.array([0.55, 0.35, 0.75]) + rng.uniform(-0.1, 0.1, 3)  # B, G, R for cv2
        bgr = np.clip(255 - (1 - grey[..., None]) * 255 * tint, 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "data" / row["path"]), bgr)
    monkeypatch.setenv("PATHREVIEW_HOME", str(tmp_path / "home"))
    recipe = lesion_recipe(str(tmp_path / "data" / "labels.csv"))
    recipe["modality"] = "histology"
    recipe["data"]["stain"] = "reinhard"
    result = run_recipe(recipe, out_dir=tmp_path / "runs")

    targets = [
        json.loads((result.run_dir / f"fold{i}" / "fold.json").read_text())["stain_target"]
        for i in range(2)
    ]
    assert all(t and t["method"] == "reinhard" for t in targets)
    assert targets[0] != targets[1]  # each fold fitted on its own training images
    card = ModelRegistry(tmp_path / "home" / "models").card(result.registered.split("@")[0])
    assert card.preprocess.stain_method == "reinhard"
    assert card.preprocess.stain_target == targets[card.metrics["registered_fold"]]
    predictor = Predictor.from_registry(result.registered, device="cpu", channels_last=False)
    assert predictor.stain_name == "reinhard"
    prediction = predictor.predict([str(tmp_path / "data" / rows[1]["path"])])[0]
    assert np.isclose(sum(prediction.probabilities.values()), 1.0, atol=1e-4)


def test_a_frozen_encoder_stays_as_loaded_and_the_rois_train_its_patch_classifier(tmp_path):
    import timm
    import torch
    from safetensors.torch import load_file, save_file

    from napari_pathreview.training.lesion import build_patch_model
    from napari_pathreview.training.recipe import load_recipe

    torch.manual_seed(3)
    frozen = timm.create_model("test_resnet", num_classes=0)
    weights = tmp_path / "test_resnet.safetensors"
    save_file(frozen.state_dict(), str(weights))
    rows = write_lesion_set(tmp_path / "data", n=16)
    recipe = lesion_recipe(
        str(tmp_path / "data" / "labels.csv"), frozen_encoder=f"timm:test_resnet={weights}"
    )
    recipe["phases"] = [{"name": "probe", "epochs": 20}]
    recipe["register"] = {"enabled": False}
    recipe["eval"].update(cam_iou=True, cam_methods=["gradcam"])
    result = run_recipe(recipe, out_dir=tmp_path / "runs")
    # the fold models' own Grad-CAM is scored against the ROIs beside their maps
    scored = result.metrics["maps_vs_roi"]
    assert scored["gradcam"]["iou"]["n"] == scored["patch_map"]["iou"]["n"] == 8
    assert 0.0 <= scored["gradcam"]["iou"]["mean"] <= 1.0

    for fold in range(2):
        saved = load_file(str(result.run_dir / f"fold{fold}" / "selected.safetensors"))
        for key, value in frozen.state_dict().items():  # BatchNorm statistics included
            assert torch.equal(saved[f"encoder.{key}"], value), key
        record = json.loads((result.run_dir / f"fold{fold}" / "fold.json").read_text())
        assert len(record["patch_history"]) == 20 and record["patches"]["positive"] > 0
        # the patch classifier tells each held-out disc from its film's tissue (a probe over
        # fixed random features); untrained, as the head pooled it before, it did not
        normal = result.metrics["classes"].index("normal")
        model = build_patch_model(load_recipe(recipe), 2, SIDE, normal)
        model.load_state_dict(saved)
        model.eval()
        for path in record["test_predictions"]["paths"]:
            row = next(r for r in rows if r["path"] == Path(path).name)
            if not row["roi_row"]:
                continue
            grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            x = torch.from_numpy(np.repeat(grey[None, None], 3, 1)).float() / 255.0
            mean, std = (
                torch.tensor(v).view(1, 3, 1, 1) for v in (model.spec.mean, model.spec.std)
            )
            lesion = 1.0 - model.explain((x - mean) / std).patch_probs[0, normal].numpy()
            centre = np.array([int(row["roi_row"]), int(row["roi_col"])])
            cells = np.indices(lesion.shape).reshape(2, -1).T * model.stride + 8  # centres
            distance = np.linalg.norm(cells - centre, axis=1)
            far = distance > 16  # the patch does not reach the disc
            assert lesion.ravel()[distance.argmin()] > 0.5 > lesion.ravel()[far].mean(), path


def test_the_card_says_which_weights_of_the_best_fold_it_holds(tmp_path, monkeypatch):
    from napari_pathreview.registry import ModelRegistry

    write_lesion_set(tmp_path / "data", n=8)
    monkeypatch.setenv("PATHREVIEW_HOME", str(tmp_path / "home"))
    recipe = lesion_recipe(str(tmp_path / "data" / "labels.csv"))
    recipe.update(ema={"enabled": True}, register={"select": "ema"})
    result = run_recipe(recipe, out_dir=tmp_path / "runs")
    card = ModelRegistry().card(*result.registered.split("@"))
    assert card.metrics["selection"] == "ema"  # the fold's patch encoder's moving average
    assert card.metrics["registered_fold"] in (0, 1)


def test_a_rescore_counts_the_maps_that_come_out_empty_beside_their_mean_iou(trained, tmp_path):
    """A fold model with a zeroed classifier gives a constant patch map and Grad-CAM: each is
    counted in ``n_cam_empty`` instead of reading as a 0 that missed the lesion."""
    import shutil

    from safetensors.torch import load_file, save_file

    result, base = trained
    fresh = {k: v for k, v in result.metrics["maps_vs_roi"].items() if k != "threshold"}
    assert all("n_cam_empty" in scored for scored in fresh.values())
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in run.glob("fold*/selected.safetensors"):
        weights = load_file(str(path))
        for key in [k for k in weights if k.endswith("classifier.weight")]:
            weights[key].zero_()
        save_file(weights, str(path))
    cams = ["eval.cam_iou=true", "eval.cam_methods=[gradcam]"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATHREVIEW_HOME", str(base / "home"))
        again = run_recipe(None, cams, resume=run, rescore=True)
    scored = again.metrics["maps_vs_roi"]
    assert scored["gradcam"]["n_cam_empty"] == scored["gradcam"]["iou"]["n"] == 6
    assert scored["patch_map"]["n_cam_empty"] == 6
    assert scored["perfect_patch_map"]["n_cam_empty"] == 0


def test_detection_intervals_draw_the_split_groups_as_the_test_intervals_do(tmp_path):
    """An image-level (leaky) split resamples single films for its test figures; lesion_detection
    drew women by patient ID whatever the split kept together, so on a binary run the same AUC
    carried two different intervals in one metrics.json."""
    write_lesion_set(tmp_path / "data", pairs=True)
    recipe = lesion_recipe(str(tmp_path / "data" / "labels.csv"))
    recipe["split"] = {**recipe["split"], "protocol": "image_kfold"}
    recipe["phases"] = [{"name": "all", "epochs": 1}]
    recipe["lesion"] = {**recipe["lesion"], "mil_epochs": 1}
    recipe["register"] = {"enabled": False}
    metrics = run_recipe(recipe, out_dir=tmp_path / "runs").metrics
    test, detection = metrics["test"], metrics["lesion_detection"]
    assert detection["pooled"]["roc_auc"] == pytest.approx(test["roc_auc"])
    # was [0.54, 0.97] beside the test's [0.33, 0.94]
    assert detection["pooled"]["ci95"] == pytest.approx(test["ci95"]["roc_auc"])
    assert metrics["leaky"] and test["ci_resampled"] == detection["ci_resampled"] == "images"
    assert detection["pooled"]["ci_n_resamples"] == test["ci_n_resamples"]["roc_auc"]
