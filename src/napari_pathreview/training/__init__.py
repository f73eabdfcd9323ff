"""Headless training: recipes, patient splits, phased fine-tuning, honest evaluation, registry.

``run_recipe`` is resolved lazily so importing the package (e.g. for the CLI) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunResult", "TrainResult", "load_recipe", "run_recipe"]


def __getattr__(name: str) -> Any:
    if name in ("run_recipe", "TrainResult", "RunResult"):
        from napari_pathreview.training import run

        return getattr(run, name)
    if name == "load_recipe":
        from napari_pathreview.training.recipe import load_recipe

        return load_recipe
    raise AttributeError(f"module 'napari_pathreview.training' has no attribute {name!r}")
