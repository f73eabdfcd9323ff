"""The model registry: model cards + safetensors weights under ``$PATHREVIEW_HOME/models``.

Importing this package does not import torch; ``register`` and ``load`` do, when called.
"""

from __future__ import annotations

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.registry.card import (
    ModelCard,
    ModelCardError,
    validate_name,
    validate_version,
)
from napari_pathreview.registry.store import ModelRegistry, ModelSummary, sha256_file

__all__ = [
    "ModelCard",
    "ModelCardError",
    "ModelRegistry",
    "ModelSummary",
    "parse_model_ref",
    "sha256_file",
]


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """Split ``"name@3"`` into ``("name", "3")``; ``"name"``/``"name@latest"`` → ``("name", None)``.

    Raises:
        InvalidInputError: an empty, malformed or unsafe reference.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInputError("a model reference looks like NAME or NAME@VERSION")
    name, sep, version = ref.strip().partition("@")
    validate_name(name)
    if not sep or version == "latest":
        return name, None
    return name, validate_version(version)
