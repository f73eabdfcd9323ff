"""The stain target is fitted inside each fold, on that fold's training part only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_pathreview.stain import get_normalizer
from napari_pathreview.training import run_recipe
from napari_pathreview.training.datasets import PreparedImage, Sample, prepare_image
from napari_pathreview.training.preparation import STAIN_FIT_IMAGES, base_spec, fit_fold_stain
from napari_pathreview.training.recipe import load_recipe
from napari_pathreview.training.splits import make_splits


def _stained_tile(rng: np.random.Generator, tint: tuple[int, int, int]) -> PreparedImage:
    noise = rng.normal(0, 25, (24, 24, 3))
    return PreparedImage(np.clip(np.array(tint) + noise, 0, 235).astype(np.uint8), ())


@pytest.fixture
def kfold():
    """12 tiles of 6 patients in 3 folds; every tile has its own colour cast."""
    rng = np.random.default_rng(0)
    tints = [(150 + 6 * i, 90 + 3 * i, 140 - 4 * i) for i in range(12)]
    prepared = [_stained_tile(rng, t) for t in tints]
    labels = np.array([0, 1] * 6)
    groups = [f"p{i // 2}" for i in range(12)]
    plan = make_splits(labels, groups, "patient_kfold", 0.2, 0.0, 3, 0)
    recipe = load_recipe({"name": "t", "data": {"root": "unused.csv", "stain": "reinhard"}})
    return recipe, prepared, plan


def test_each_fold_target_is_fitted_on_exactly_its_training_images(kfold):
    recipe, prepared, plan = kfold
    targets = []
    for fold in plan.folds:
        target = fit_fold_stain(recipe, prepared, fold.train)
        own = get_normalizer("reinhard").fit([prepared[i].pixels for i in fold.train])
        assert target == own.to_dict()
        targets.append(target)
    assert targets[0] != targets[1] != targets[2]


def test_no_test_image_of_a_fold_moves_its_target(kfold):
    recipe, prepared, plan = kfold
    for fold in plan.folds:
        before = fit_fold_stain(recipe, prepared, fold.train)
        replaced = list(prepared)
        for i in [*fold.test, *fold.val]:  # blue-black tiles: would drag any fit they entered
            replaced[i] = PreparedImage(np.full((24, 24, 3), (20, 20, 120), np.uint8), ())
        assert fit_fold_stain(recipe, replaced, fold.train) == before
        replaced[fold.train[0]] = replaced[fold.test[0]]  # the check can see a change
        assert fit_fold_stain(recipe, replaced, fold.train) != before


def test_registered_card_carries_the_target_of_its_own_fold(tiny_recipe, tmp_path):
    from napari_pathreview.registry import ModelRegistry

    recipe = tiny_recipe(
        data={**tiny_recipe()["data"], "subset": 24, "stain": "reinhard"},
        split={"protocol": "patient_kfold", "folds": 2, "val_fraction": 0.2},
        phases=[{"name": "all", "epochs": 1}],
        register={"name": "stained"},
    )
    result = run_recipe(recipe, out_dir=tmp_path)
    targets = [f.preprocess.stain_target for f in result.folds]
    assert targets[0] != targets[1]
    splits = json.loads((result.run_dir / "splits.json").read_text())["folds"]
    spec = base_spec(load_recipe(recipe))
    for fold, split in zip(result.folds, splits, strict=True):
        test_paths = {row["path"] for row in split["test"]}
        assert test_paths and not test_paths & {row["path"] for row in split["train"]}
        train = [prepare_image(Sample(r["path"], "", ""), spec).pixels for r in split["train"]]
        refit = get_normalizer("reinhard").fit(train[:STAIN_FIT_IMAGES]).to_dict()
        assert fold.preprocess.stain_target == refit
        saved = json.loads((result.run_dir / f"fold{fold.fold}" / "fold.json").read_text())
        assert saved["preprocess"]["stain_target"] == fold.preprocess.stain_target
    card = ModelRegistry().card("stained")
    registered = card.metrics["registered_fold"]
    assert card.stain_target == targets[registered] == card.preprocess.stain_target
