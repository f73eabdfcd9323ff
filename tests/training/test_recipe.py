"""Recipes parse into frozen dataclasses; overrides coerce types; mistakes name the key."""

import dataclasses
from pathlib import Path

import pytest

from napari_pathreview.training.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "training"
MINIMAL = {"data": {"source": "folder", "root": "x"}}


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.total_epochs >= 1


def test_recipes_are_reachable_from_the_installed_package():
    import napari_pathreview.training as training

    shipped = Path(training.__file__).parent / "recipes"
    assert (shipped / "demo_histology.yaml").is_file()


def test_overrides_coerce_types_and_reach_list_items():
    recipe = load_recipe(
        RECIPES / "seed001_hybrid.yaml",
        [
            "optim.lr=2e-4",
            "phases.*.epochs=1",
            "phases.0.lr=0.5",
            "data.qc=false",
            "data.subset=12",
            "model.kwargs={head_drop: 0.1}",
        ],
    )
    assert recipe.optim.lr == pytest.approx(2e-4)
    assert [p.epochs for p in recipe.phases] == [1, 1, 1]
    assert recipe.phases[0].lr == 0.5 and recipe.data.qc is False and recipe.data.subset == 12
    assert recipe.model.kwargs == {"head_drop": 0.1}


def test_recipe_is_frozen():
    recipe = load_recipe(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key.*lrr.*valid keys"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("optim.batch_size=2.5", "expected an integer"),
        ("loss.name=hinge", "loss.name: 'hinge' is not one of"),
        ("split.protocol=random", "split.protocol"),
        ("novalue", "key.path=value"),
        ("phases.4.epochs=1", "not an index"),
        ("register.select=ema", "ema.enabled"),
    ],
)
def test_mistakes_raise_errors_naming_the_key(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(MINIMAL, [override])


def test_every_problem_in_a_recipe_is_listed_at_once():
    with pytest.raises(RecipeError) as caught:
        load_recipe(
            MINIMAL,
            [
                "split.val_fraction=0.6",
                "split.test_fraction=0.5",
                "register.select=ema",
                "phases.*.epochs=0",
                "optim.lr=-1",
            ],
        )
    message = str(caught.value)
    for expected in (
        "val_fraction + split.test_fraction = 1.1",
        "ema.enabled",
        "at least one epoch",
        "optim.lr=-1.0 is outside",
    ):
        assert expected in message


LESION = {
    "data": {"source": "mias", "root": "x"},
    "split": {"protocol": "patient_kfold"},
    "lesion": {"enabled": True},
}


@pytest.mark.parametrize(
    ("recipe", "override", "message"),
    [
        (MINIMAL, "register.select=ensemble", "lesion.enabled: false"),
        (LESION, "split.protocol=patient_holdout", "needs a k-fold split"),
        (LESION, "data.stain=reinhard", "one model card holds one"),
    ],
)
def test_a_fold_ensemble_is_refused_where_folds_cannot_be_averaged(recipe, override, message):
    with pytest.raises(RecipeError, match=f"register.select: ensemble.*{message}"):
        load_recipe(recipe, ["register.select=ensemble", override])
    assert load_recipe(LESION, ["register.select=ensemble"]).register.select == "ensemble"


def test_a_lesion_run_takes_the_tta_its_held_out_films_are_scored_under():
    assert load_recipe(LESION, ["eval.tta=d4"]).eval.tta == "d4"
    with pytest.raises(RecipeError, match="eval.tta"):
        load_recipe(LESION, ["eval.tta=rotations"])


def test_a_lesion_run_refuses_a_checkpoint_average_it_would_not_register():
    # the fold's patch training keeps its best epoch; topk would silently register "best"
    with pytest.raises(RecipeError, match="register.select: topk.*lesion run"):
        load_recipe(LESION, ["register.select=topk"])
    assert load_recipe(MINIMAL, ["register.select=topk"]).register.select == "topk"
    frozen = ["lesion.frozen_encoder=timm:resnet18=w.safetensors", "ema.enabled=true"]
    with pytest.raises(RecipeError, match="register.select: ema.*frozen_encoder"):
        load_recipe(LESION, [*frozen, "register.select=ema"])
    assert load_recipe(LESION, ["ema.enabled=true", "register.select=ema"]).register.select == "ema"


def test_the_two_film_decision_is_refused_where_there_is_no_left_and_right():
    with pytest.raises(RecipeError, match="lesion.bilateral.*modality: histology"):
        load_recipe(LESION, ["lesion.bilateral=true"])  # slides of a patient are not a pair
    with pytest.raises(RecipeError, match="lesion.bilateral.*lesion.enabled: false"):
        load_recipe(MINIMAL, ["lesion.bilateral=true", "modality=mammogram"])
    assert load_recipe(LESION, ["lesion.bilateral=true", "modality=mammogram"]).lesion.bilateral


def test_missing_file_and_missing_root_are_clear():
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("/nonexistent/recipe.yaml")
    with pytest.raises(RecipeError, match="data.root is required"):
        load_recipe({"name": "x"})


def test_sample_data_paths_resolve_inside_the_package_when_not_beside_the_recipe(tmp_path):
    from napari_pathreview.training.recipe import resolve_path

    recipe = load_recipe(
        {"data": {"source": "csv", "root": "../sample_data/demo"}}, base_dir=tmp_path / "elsewhere"
    )
    resolved = resolve_path(recipe, recipe.data.root)
    assert resolved.is_dir() and "napari_pathreview" in str(resolved)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_recipe_extends_another_by_the_keys_it_changes(tmp_path):
    _write(
        tmp_path / "base.yaml",
        "name: base\ndata: {source: folder, root: x, image_size: 96}\n"
        "optim: {lr: 0.01, batch_size: 16}\nphases: [{name: a, epochs: 2}, {name: b, epochs: 3}]\n",
    )
    child = _write(
        tmp_path / "child.yaml",
        "extends: base.yaml\noptim: {lr: 0.001}\nphases: [{name: only, epochs: 1}]\n",
    )
    recipe = load_recipe(child, ["optim.batch_size=8"])
    assert recipe.name == "child"  # named for itself, not for the recipe it extends
    assert (recipe.optim.lr, recipe.optim.batch_size) == (0.001, 8)
    assert recipe.data.image_size == 96  # kept from the base, key by key
    assert [p.name for p in recipe.phases] == ["only"]  # a list is replaced whole


def test_the_imagenet_mias_recipe_is_the_shipped_one_with_its_three_changes():
    """README run 11's command (the shipped recipe and three --set), as a recipe of its own."""
    changes = [
        "model.architecture=tf_efficientnet_lite0",
        "model.pretrained=true",
        "optim.lr=0.0005",
        "name=mias_lesion_mil_imagenet",
    ]
    by_command = load_recipe(RECIPES / "mias_lesion_mil.yaml", changes).to_dict()
    assert load_recipe(RECIPES / "mias_lesion_mil_imagenet.yaml").to_dict() == by_command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("extends: nowhere.yaml\n", r"a\.yaml: extends: recipe file not found: .*nowhere\.yaml"),
        ("extends: 3\n", r"a\.yaml: extends must name a recipe file, got 3"),
        ("extends: b.yaml\n", r"extend each other in a loop: .*a\.yaml → .*b\.yaml → .*a\.yaml"),
    ],
)
def test_a_base_that_cannot_be_read_is_named(tmp_path, text, message):
    _write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path / "a.yaml", text))
