"""Reviews feed lesion-aware training; the review queue puts what the model is unsure of first."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_pathreview.io.geojson import Roi, rois_to_geojson
from napari_pathreview.training import run_recipe

SIDE = 64
TARGET = "img05.png"  # a dark lesion unlike the others' bright discs: only its ROI can teach it
TARGET_BOX = (20, 44)  # rows/cols 20..44


def _write_images(folder: Path) -> list[tuple[Path, str, tuple | None]]:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(10):
        image = np.clip(rng.normal(90, 12, (SIDE, SIDE)), 30, 255).astype(np.uint8)
        label, roi = "normal", None
        if i % 2:
            label = "lesion"
            if f"img{i:02d}.png" == TARGET:
                lo, hi = TARGET_BOX
                image[lo:hi, lo:hi] = np.clip(rng.normal(40, 6, (hi - lo, hi - lo)), 25, 255)
                roi = (lo, lo, hi, hi)
            else:
                cv2.circle(image, (32, 32), 9, 230, -1)
                roi = (22, 22, 42, 42)
        path = folder / f"img{i:02d}.png"
        cv2.imwrite(str(path), image)
        out.append((path, label, roi))
    return out


def _square(box) -> dict:
    r0, c0, r1, c1 = box
    data = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    return rois_to_geojson([Roi(data, "polygon")])


def _review_db(tmp_path: Path, with_target_roi: bool) -> Path:
    from napari_pathreview.review.store import ReviewStore

    db = tmp_path / f"reviews_{int(with_target_roi)}.sqlite"
    with ReviewStore(f"sqlite:///{db}") as store:
        for path, label, roi in _write_images(tmp_path / "images"):
            sha = store.add_image(path, "mammogram", patient_id=path.stem)
            keep = roi is not None and (with_target_roi or path.name != TARGET)
            store.add_review(sha, "dr_a", label, None, roi_geojson=_square(roi) if keep else None)
    return db


def _recipe() -> dict:
    return {
        "name": "from_reviews",
        "seed": 0,
        "modality": "mammogram",
        "data": {"source": "reviews", "task": "lesion"},
        "split": {"protocol": "patient_holdout", "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"architecture": "test_resnet"},
        "optim": {"batch_size": 32, "lr": 0.005},
        "schedule": {"name": "none"},
        "phases": [{"name": "all", "epochs": 4}],
        "eval": {"bootstrap": 10},
        "lesion": {
            "enabled": True,
            "patch_size": 16,
            "stride": 8,
            "context": 2,
            "margin": 2,
            "negative_class": "normal",
            "mil_epochs": 3,
            "positives_per_image": 24,
        },
    }


def _inside_roi(ref: str, image_path: Path) -> float:
    from napari_pathreview.inference.mil_maps import explain_mil
    from napari_pathreview.inference.predictor import Predictor

    predictor = Predictor.from_registry(ref, device="cpu", channels_last=False)
    rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    patch_map = explain_mil(predictor, rgb).patch_map
    lo, hi = TARGET_BOX
    return float(patch_map[lo:hi, lo:hi].mean())


def test_a_reviewers_roi_raises_the_retrained_patch_map_inside_it(tmp_path):
    before_db = _review_db(tmp_path, with_target_roi=False)
    before = run_recipe(_recipe(), out_dir=tmp_path / "runs", from_reviews=str(before_db))
    after_db = _review_db(tmp_path, with_target_roi=True)
    after = run_recipe(_recipe(), out_dir=tmp_path / "runs", from_reviews=str(after_db))
    target = tmp_path / "images" / TARGET
    splits = json.loads((after.run_dir / "splits.json").read_text())["folds"][0]
    assert str(target) in {row["path"] for row in splits["train"]}  # the ROI was trained on
    assert _inside_roi(after.registered, target) > _inside_roi(before.registered, target)


def test_disagreeing_reviews_weigh_their_patches():
    from napari_pathreview.training.patches import LesionImage, PatchSampling, sample_patches

    mask = np.zeros((40, 40), bool)
    mask[15:25, 15:25] = True
    image = LesionImage(
        "x.png", 1, "p", np.zeros((40, 40, 3), np.uint8), mask, np.ones((40, 40), bool), weight=2.0
    )
    patches = sample_patches([image], PatchSampling(patch_size=8, context=0), 0)
    assert len(patches) and (patches.weights == 2.0).all()


# ----- active learning: queue order ---------------------------------------------------------
def test_entropy_and_view_disagreement_rank_unsure_images_first():
    from napari_pathreview.review.ordering import entropy, view_disagreement

    assert entropy([1.0, 0.0]) < entropy([0.7, 0.3]) < entropy([0.5, 0.5])
    stable = np.array([[0.9, 0.1], [0.88, 0.12]])
    flipping = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert view_disagreement(flipping) > view_disagreement(stable)


@pytest.fixture
def registered_model(tmp_path):
    """A small registered classifier (no training needed to order a queue)."""
    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    model = create_model("test_resnet", 2)
    card = {
        "name": "queue-model",
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "mammogram",  # the films it orders are single-channel
        "input_size": [3, 32, 32],
    }
    return f"queue-model@{ModelRegistry().register(model, card)}"


def test_order_images_sorts_by_uncertainty(tmp_path, registered_model):
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.review.ordering import order_images

    paths = [p for p, _, _ in _write_images(tmp_path / "images")][:4]
    predictor = Predictor.from_registry(registered_model, device="cpu", channels_last=False)
    entries = order_images(predictor, paths, "uncertainty", tta="flips")
    scores = [e.score for e in entries]
    assert scores == sorted(scores, reverse=True)
    assert {e.path for e in entries} == set(paths)


def test_review_queue_cli_writes_an_ordered_queue_csv(tmp_path, registered_model):
    _write_images(tmp_path / "images")
    out = tmp_path / "queue.csv"
    script = Path(sys.executable).parent / "pathreview"
    done = subprocess.run(
        [
            str(script),
            "review",
            "queue",
            str(tmp_path / "images"),
            "--model",
            registered_model,
            "--order",
            "tta_disagreement",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 10 and [int(r["rank"]) for r in rows] == list(range(1, 11))
    scores = [float(r["tta_disagreement"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_review_queue_csv_from_relative_paths_opens_as_a_work_queue(tmp_path, registered_model):
    """`pathreview review queue images/ --out queues/next.csv` run in the images' parent folder:
    the Review widget's Open CSV (WorkQueue.from_source) finds every queued image."""
    from napari_pathreview.widgets._queue import WorkQueue

    paths = [p for p, _, _ in _write_images(tmp_path / "images")]
    script = Path(sys.executable).parent / "pathreview"
    args = ["review", "queue", "images", "--model", registered_model, "--tta", "none"]
    done = subprocess.run(
        [str(script), *args, "--out", "queues/next.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    queue = WorkQueue.from_source(tmp_path / "queues" / "next.csv", order="file name")
    assert sorted(queue.paths) == sorted(p.resolve() for p in paths)


def test_review_queue_cli_refuses_an_unknown_order(tmp_path):
    script = Path(sys.executable).parent / "pathreview"
    done = subprocess.run(
        [str(script), "review", "queue", "--order", "random", "--out", "q.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode != 0 and "invalid choice: 'random'" in done.stderr


def test_review_widget_queue_opens_in_uncertainty_order(tmp_path, registered_model):
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.review.ordering import order_images
    from napari_pathreview.widgets._queue import WorkQueue

    paths = [p for p, _, _ in _write_images(tmp_path / "images")]
    queue = WorkQueue.from_source(tmp_path / "images", order="uncertainty", model=registered_model)
    predictor = Predictor.from_registry(registered_model, device="cpu")
    expected = [e.path for e in order_images(predictor, paths, "uncertainty", "flips")]
    assert queue.paths == expected and queue.index == 0


def test_active_learning_order_without_a_model_is_refused(tmp_path):
    from napari_pathreview.errors import InvalidInputError
    from napari_pathreview.widgets._queue import WorkQueue

    _write_images(tmp_path / "images")
    with pytest.raises(InvalidInputError, match="needs a model"):
        WorkQueue.from_source(tmp_path / "images", order="uncertainty")
