"""Building a recipe's model, and rebuilding a finished fold's model from its run folder.

Registration, the external test and the CAM check all need "the model of fold k with its
selected weights"; :func:`load_fold_model` is the one place that does it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.training.recipe import Recipe, load_recipe
from napari_pathreview.training.results import RECIPE_FILE, fold_dir, read_fold

#: create_model arguments naming where initial weights come from, not the architecture.
_WEIGHT_SOURCES = ("pretrained", "pretrained_path")


def build_model(recipe: Recipe, num_classes: int, pretrained: bool | None = None):
    """``models.create_model`` as the recipe says (every timm name works there too).

    Args:
        recipe: The run's recipe.
        num_classes: Width of the logits.
        pretrained: Override the recipe's choice; False when weights are loaded afterwards.
    """
    from napari_pathreview.models import create_model

    kwargs = dict(recipe.model.kwargs)
    if pretrained is False:
        kwargs = {k: v for k, v in kwargs.items() if k not in _WEIGHT_SOURCES}
    use = recipe.model.pretrained if pretrained is None else pretrained
    return create_model(recipe.model.architecture, num_classes, pretrained=use, **kwargs)


def load_fold_model(run_dir: str | Path, fold: int):
    """Fold ``fold``'s model with its selected weights, in eval mode, on the CPU.

    Raises:
        InvalidInputError: the run folder has no recipe, or the fold has not finished.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    recipe_path = run_dir / RECIPE_FILE
    if not recipe_path.is_file():
        raise InvalidInputError(f"{run_dir} is not a run folder (no {RECIPE_FILE})")
    result = read_fold(run_dir, fold)
    if result is None:
        raise InvalidInputError(f"fold {fold} of {run_dir} has not finished (no fold.json)")
    recipe = load_recipe(yaml.safe_load(recipe_path.read_text()))
    model = build_model(recipe, len(result.classes), pretrained=False)
    model.load_state_dict(load_file(str(fold_dir(run_dir, fold) / result.weights)))
    return model.eval()
