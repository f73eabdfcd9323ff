"""Building a recipe's model, and rebuilding a finished fold's model from its run folder.

Registration, the external test and the CAM check all need "the model of fold k with its
selected weights"; :func:`load_fold_model` is the one place that does it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.training.recipe import Recipe, load_recipe, resolve_path
from napari_pathreview.training.results import RECIPE_FILE, fold_dir, read_fold

#: create_model arguments naming where initial weights come from, not the architecture.
_WEIGHT_SOURCES = ("pretrained", "pretrained_path")


def wants_pretrained(recipe: Recipe) -> bool:
    """Whether the recipe's model starts from pretrained weights, which must then be found.

    A lesion run's ``lesion.frozen_encoder`` replaces every encoder weight, so it needs none.
    """
    if recipe.lesion.enabled and recipe.lesion.frozen_encoder:
        return False
    return bool(recipe.model.pretrained or recipe.model.kwargs.get("pretrained_path"))


def model_arguments(recipe: Recipe, pretrained: bool | None = None) -> tuple[str, dict]:
    """The ``create_model`` name and keyword arguments of the recipe's model (not num_classes).

    A lesion recipe builds ``patch_mil`` with ``model.architecture`` as its encoder (unless it
    names patch_mil itself). Weight sources are included only when the recipe wants
    pretrained weights and ``pretrained`` is not False.
    """
    kwargs = {k: v for k, v in recipe.model.kwargs.items() if k not in _WEIGHT_SOURCES}
    name = recipe.model.architecture
    if recipe.lesion.enabled:
        if name != "patch_mil":
            kwargs.setdefault("encoder", name)
        name = "patch_mil"
    if pretrained is not False and wants_pretrained(recipe):
        kwargs["pretrained"] = True
        if recipe.model.kwargs.get("pretrained_path"):  # beside the recipe, as data paths
            kwargs["pretrained_path"] = str(
                resolve_path(recipe, recipe.model.kwargs["pretrained_path"])
            )
    return name, kwargs


def require_recipe_weights(recipe: Recipe) -> None:
    """Refuse a recipe whose pretrained weights are nowhere, before a run folder or an image.

    Raises:
        WeightsError: names the model, its backbones, the places looked in and what to do.
    """
    from napari_pathreview.errors import WeightsError
    from napari_pathreview.models.factory import require_pretrained

    if not wants_pretrained(recipe):
        return
    name, kwargs = model_arguments(recipe)
    kwargs.pop("pretrained")
    try:
        require_pretrained(name, **kwargs)
    except WeightsError as error:
        raise WeightsError(
            f"recipe {recipe.name!r} asks for pretrained weights (model.pretrained: true), "
            f"but {error}"
        ) from None


def require_buildable(recipe: Recipe):
    """Refuse a recipe whose model cannot be built (a ``model.kwargs`` key the architecture
    does not take, a value it rejects), before a run folder or an image.

    The model is built on PyTorch's meta device: no memory, no weights, a fraction of a second.

    Returns:
        That meta-device model, for the checks that read its shapes (``require_cam_grid``).

    Raises:
        RecipeError: names the architecture, the kwargs and the constructor's complaint.
    """
    import torch

    from napari_pathreview.training.recipe import RecipeError

    try:
        with torch.device("meta"):
            return build_model(recipe, 2, pretrained=False)
    except (TypeError, ValueError) as error:
        raise RecipeError(
            f"recipe {recipe.name!r}: model.architecture {recipe.model.architecture!r} with "
            f"model.kwargs {dict(recipe.model.kwargs)} cannot be built: {error}"
        ) from None


def require_cam_grid(recipe: Recipe, model) -> None:
    """Refuse ``eval.cam_iou`` when the model's CAM layer is too coarse at ``data.image_size``
    (``explain.cam_grid``): every CAM would be flat and its IoU meaningless, which the run
    would otherwise report only after training.

    A lesion run is not checked: its CAM layer is the patch grid over the whole film, whose
    size comes from the films themselves.

    Args:
        recipe: The run's recipe.
        model: The recipe's model, as :func:`require_buildable` returns it (meta device).

    Raises:
        RecipeError: names the keys, the architecture, the grid and the smallest size that
            gives a usable one.
    """
    from napari_pathreview.explain.cam_grid import (
        MIN_CAM_CELLS,
        cam_grid,
        can_localise,
        smallest_localising_size,
    )
    from napari_pathreview.training.recipe import RecipeError
    from napari_pathreview.training.recipe_schema import MAX_IMAGE_SIZE

    if not recipe.eval.cam_iou or recipe.lesion.enabled:
        return
    size = recipe.data.image_size
    try:
        grid = cam_grid(model, size)
    except (RuntimeError, ValueError, AssertionError):
        return  # a model that cannot run on the meta device at this size: not this check's
    if can_localise(grid):
        return
    smallest = smallest_localising_size(model, size, MAX_IMAGE_SIZE)
    if smallest is None:
        fix = f"no data.image_size up to {MAX_IMAGE_SIZE} gives one; set eval.cam_iou: false"
    else:
        fix = f"set data.image_size to at least {smallest} (or eval.cam_iou: false)"
        if recipe.data.resize is not None and recipe.data.resize < smallest:
            fix += f", with data.resize at least as large (now {recipe.data.resize})"
    raise RecipeError(
        f"recipe {recipe.name!r}: eval.cam_iou needs a CAM layer of at least "
        f"{MIN_CAM_CELLS}×{MIN_CAM_CELLS}, but model.architecture "
        f"{recipe.model.architecture!r} has a {grid[0]}×{grid[1]} one at data.image_size "
        f"{size}, so every CAM would be flat; {fix}"
    )


def build_model(recipe: Recipe, num_classes: int, pretrained: bool | None = None):
    """``models.create_model`` as the recipe says (every timm name works there too).

    Args:
        recipe: The run's recipe.
        num_classes: Width of the logits.
        pretrained: False when weights are loaded afterwards; else as the recipe says.
    """
    from napari_pathreview.models import create_model

    name, kwargs = model_arguments(recipe, pretrained)
    return create_model(name, num_classes, **kwargs)


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
