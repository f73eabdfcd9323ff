"""A resumed run trains its unfinished folds on the data its finished folds were trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_pathreview.training import run_recipe


def _kill_in_fold(fold: int):
    """A progress callback that stops the run in ``fold``'s first epoch, as a kill would."""

    def progress(entry: dict) -> None:
        if entry["fold"] == fold:
            raise KeyboardInterrupt("simulated kill")

    return progress


def _label(path: Path) -> str:
    return "malignant" if "SOB_M_" in path.name else "benign"


def _review(store, paths) -> None:
    for path in paths:
        sha = store.add_image(path, "histology")
        store.add_review(sha, "dr-a", _label(path), agrees_with_model=True)


@pytest.fixture
def two_folds(tiny_recipe):
    return tiny_recipe(
        phases=[{"name": "all", "epochs": 1}],
        split={"protocol": "patient_kfold", "folds": 2, "val_fraction": 0.2},
    )


def _killed_run(recipe, out: Path, **kwargs) -> Path:
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, out_dir=out, progress=_kill_in_fold(1), **kwargs)
    return next(out.iterdir())


def test_resuming_a_from_reviews_run_without_the_flag_trains_on_the_reviews(
    two_folds, shared_data, tmp_path
):
    """The recipe's own data (all 64 BreaKHis images) must not replace the reviews midway."""
    from napari_pathreview.review import ReviewStore

    reviewed = sorted((shared_data / "breakhis").glob("SOB_*.png"))[::2]
    db = tmp_path / "reviews.sqlite"
    with ReviewStore(f"sqlite:///{db}") as store:
        _review(store, reviewed)
    killed = _killed_run(two_folds, tmp_path / "runs", from_reviews=str(db))
    resumed = run_recipe(None, resume=killed)
    assert resumed.metrics["n_images"] == len(reviewed)
    tested = [p for fold in resumed.folds for p in fold.test_predictions.paths]
    assert sorted(tested) == sorted(str(p) for p in reviewed)


def test_a_from_reviews_run_records_the_store_as_its_data(two_folds, shared_data, tmp_path):
    """recipe.yaml (and so the card) says the model learnt the reviews, not the recipe's data."""
    from napari_pathreview.review import ReviewStore
    from napari_pathreview.training.recipe import load_recipe

    db = tmp_path / "reviews.sqlite"
    with ReviewStore(f"sqlite:///{db}") as store:
        _review(store, sorted((shared_data / "breakhis").glob("SOB_*.png"))[::2])
    killed = _killed_run(two_folds, tmp_path / "runs", from_reviews=str(db))
    saved = load_recipe(killed / "recipe.yaml")
    assert (saved.data.source, saved.data.root) == ("reviews", str(db.resolve()))


def test_a_resumed_from_reviews_run_ignores_reviews_saved_since_it_began(
    two_folds, shared_data, tmp_path
):
    from napari_pathreview.review import ReviewStore

    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))
    db = tmp_path / "reviews.sqlite"
    with ReviewStore(f"sqlite:///{db}") as store:
        _review(store, images[::2])
    killed = _killed_run(two_folds, tmp_path / "runs", from_reviews=str(db))
    with ReviewStore(f"sqlite:///{db}") as store:
        _review(store, images[1::2])
    resumed = run_recipe(None, resume=killed, from_reviews=str(db))
    assert resumed.metrics["n_images"] == len(images[::2])


def test_from_reviews_keeps_a_database_password_out_of_the_recipe():
    from napari_pathreview.training.recipe import load_recipe
    from napari_pathreview.training.run_data import with_reviews_source

    recipe = load_recipe({"data": {"source": "csv", "root": "x.csv"}})
    url = "postgresql://ana:s3cret@db.example:5433/reviews"
    changed = with_reviews_source(recipe, url)
    assert changed.data.root == "postgresql://ana@db.example:5433/reviews"


def test_resume_refuses_data_that_no_longer_splits_as_recorded(two_folds, shared_data, tmp_path):
    """Fold 0 finished on one split; fold 1 of another would test images fold 0 trained on."""
    from napari_pathreview.training.splits import SplitError

    images = sorted((shared_data / "breakhis").glob("SOB_*.png"))
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{_label(p)}\n" for p in images))
    recipe = {**two_folds, "data": {**two_folds["data"], "source": "csv", "root": str(manifest)}}
    killed = _killed_run(recipe, tmp_path / "runs")
    recorded = (killed / "splits.json").read_text()
    manifest.write_text("path,label\n" + "".join(f"{p},{_label(p)}\n" for p in images[4:]))
    with pytest.raises(SplitError, match="no longer splits as when this run began"):
        run_recipe(None, resume=killed)
    assert (killed / "splits.json").read_text() == recorded
    assert json.loads(recorded)["folds"][0]["test"]
