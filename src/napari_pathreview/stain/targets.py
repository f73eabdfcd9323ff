"""Stain targets a user supplies: the JSON ``pathreview stain fit`` writes, read back safely.

Shared by ``pathreview predict --stain-target FILE`` and the Analyze widget's "Load target…",
so both accept and refuse exactly the same files.
"""

from __future__ import annotations

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
    from napari_pathreview.stain import normalizer_from_dict

    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StainTargetError(f"cannot read stain target {path}: {error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StainTargetError(
            f"{path} is not JSON ({error}); write one with `pathreview stain fit`"
        ) from error
    try:
        normalizer = normalizer_from_dict(state)
    except Exception as error:  # noqa: BLE001 - re-raised naming the file
        raise StainTargetError(f"{path} is not a stain target: {error}") from error
    if not normalizer.is_fitted:
        raise StainTargetError(f"{path} holds an unfitted {state.get('method')} normaliser")
    return dict(state)
