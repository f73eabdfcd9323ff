"""Patient-level splits keep every patient in one part; image-level ones say they leak."""

import numpy as np
import pytest

from napari_pathreview.training.datasets import from_breakhis, from_mias
from napari_pathreview.training.splits import SplitError, assert_no_patient_overlap, make_splits


def _parts(plan, groups):
    groups = np.asarray(groups)
    for fold in plan.folds:
        yield [set(groups[list(getattr(fold, name))]) for name in ("train", "val", "test")]


def _check_disjoint(plan, groups):
    for train, val, test in _parts(plan, groups):
        assert not (train & val) and not (train & test) and not (val & test)


def test_no_breakhis_patient_is_in_two_parts_of_the_holdout_split(shared_data):
    samples = from_breakhis(shared_data / "breakhis", "binary")
    labels = [s.label == "malignant" for s in samples]
    groups = [s.patient_id for s in samples]
    plan = make_splits(labels, groups, "patient_holdout", seed=3)
    _check_disjoint(plan, groups)
    fold = plan.folds[0]
    assert sorted(fold.train + fold.val + fold.test) == list(range(len(samples)))
    assert not plan.leaky and "grouped by patient" in plan.description


def test_no_mias_woman_is_in_two_folds_of_patient_kfold(shared_data):
    samples = from_mias(shared_data / "mias_full")
    labels = [("normal", "benign", "malignant").index(s.label) for s in samples]
    groups = [s.patient_id for s in samples]
    plan = make_splits(labels, groups, "patient_kfold", folds=5, seed=0)
    _check_disjoint(plan, groups)
    tests = [set(np.asarray(groups)[list(f.test)]) for f in plan.folds]
    assert sum(len(t) for t in tests) == len(set(groups))  # each woman tested exactly once


def test_image_level_split_is_flagged_leaky():
    labels = [0, 1] * 20
    groups = [f"p{i // 4}" for i in range(40)]
    plan = make_splits(labels, groups, "image_kfold", folds=3)
    assert plan.leaky and "leak" in plan.description


def test_overlap_check_catches_a_shared_patient():
    from napari_pathreview.training.splits import Fold, SplitPlan

    plan = SplitPlan("patient_holdout", False, (Fold((0, 1), (2,), (3,)),), "")
    with pytest.raises(SplitError, match="p1"):
        assert_no_patient_overlap(plan, ["p0", "p1", "p1", "p2"])


def test_too_few_patients_for_the_folds_raise_a_clear_error():
    with pytest.raises(SplitError, match="patients cannot fill 5 folds"):
        make_splits([0, 1, 0, 1, 0, 1], ["a", "a", "b", "b", "c", "c"], "patient_kfold", folds=5)
    with pytest.raises(SplitError, match="unknown split protocol"):
        make_splits([0, 1, 0, 1], list("abcd"), "random")


@pytest.mark.parametrize("with_patient_column", [False, True])
def test_patient_stem_grouping_holds_for_a_breakhis_manifest(
    shared_data, tmp_path, with_patient_column
):
    """split.group_by: patient_stem was read only from `source: breakhis`; a CSV manifest (or
    the review export) of the same files split slides 14-22549AB and 14-22549CD apart."""
    from napari_pathreview.training.recipe import load_recipe
    from napari_pathreview.training.run_data import prepare_data

    samples = from_breakhis(shared_data / "breakhis", "binary")
    manifest = tmp_path / "labels.csv"
    rows = [f"{s.path},{s.label},{s.patient_id}" for s in samples]
    header = "path,label,patient_id" if with_patient_column else "path,label"
    if not with_patient_column:
        rows = [row.rsplit(",", 1)[0] for row in rows]
    manifest.write_text("\n".join([header, *rows]) + "\n")
    recipe = load_recipe(
        {
            "data": {"source": "csv", "root": str(manifest), "image_size": 32, "resize": 36},
            "split": {"protocol": "patient_kfold", "folds": 3, "group_by": "patient_stem"},
        }
    )
    data = prepare_data(recipe, tmp_path)
    stems = [s.patient_id.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for s in data.samples]
    _check_disjoint(data.plan, stems)
