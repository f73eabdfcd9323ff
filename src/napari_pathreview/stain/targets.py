"""Stain targets a user supplies: the JSON ``pathreview stain fit`` writes, read back safely.

Shared by ``pathreview predict --stain-target FILE`` and the Analyze widget's "Load target…",
so both accept and refuse exactly the same files. :func:`target_id` names whatever target was
applied (a file's, a model card's, a preset) in ``slides.csv``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from napari_pathreview.errors import InvalidInputError


class StainTargetError(InvalidInputError):
    """A stain target file cannot be read or is not a fitted normaliser's state."""


def load_target(path: str | Path) -> dict[str, Any]:
    """The fitted state in ``path``, checked by restoring a normaliser from it.

    Raises:
        StainTargetError: naming the file, when it is missing, not JSON, or not a fitted
            Reinhard/Macenko/Vahadane state.
    """
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StainTargetError(f"cannot read stain target {path}: {error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StainTargetError(
            f"{path} is not JSON ({error}); write one with `pathreview stain fit`"
        ) from error
    return check_target(state, path)


def check_target(state: Any, where: Any) -> dict[str, Any]:
    """``state`` if it is a fitted normaliser's (a target file's, or one a saved session
    holds), checked by restoring a normaliser from it.

    Raises:
        StainTargetError: naming ``where``, when it is not a fitted Reinhard/Macenko/Vahadane
            state.
    """
    from napari_pathreview.stain import normalizer_from_dict

    if not isinstance(state, dict):
        raise StainTargetError(f"{where} is not a stain target: not a JSON object")
    try:
        normalizer = normalizer_from_dict(state)
    except Exception as error:  # noqa: BLE001 - re-raised naming the file
        raise StainTargetError(f"{where} is not a stain target: {error}") from error
    if not normalizer.is_fitted:
        raise StainTargetError(f"{where} holds an unfitted {state.get('method')} normaliser")
    return dict(state)


def target_id(normalizer: Any) -> str:
    """12 hex digits naming the fitted target ``normalizer`` applies; empty when it applies none.

    Hashed from the restored state (``to_dict()``), so a target has one id wherever it came
    from: a ``--stain-target`` file, a copy of it, or the model card holding the same state.
    """
    if str(getattr(normalizer, "name", "none")) == "none" or not normalizer.is_fitted:
        return ""
    text = json.dumps(normalizer.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
