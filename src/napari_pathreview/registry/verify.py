"""Prove an imported model loads before it enters the registry.

A card and a weights file can each be well-formed and still not belong together (kwargs the
architecture does not take, a head of the wrong width, tensors of another network, a file
cut short). ``models import`` would then register something every later ``load`` fails on;
here the safetensors header is parsed by hand (no torch), the architecture is built from the
card's kwargs, and every tensor name and shape is compared before the import commits.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from napari_pathreview.errors import WeightsError
from napari_pathreview.registry.card import ModelCard, ModelCardError

#: The registry stores these create_model arguments as provenance, never passes them on.
PROVENANCE_KWARGS: tuple[str, ...] = ("pretrained", "pretrained_path")
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
_SHOWN = 5


def read_safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from a safetensors file's header, checking it against the file.

    Raises:
        WeightsError: The file is shorter than its header says, the header is not JSON, or a
            tensor's byte range lies outside the data (a truncated or forged file).
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightsError(f"{path} is too short ({size} bytes) to be a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or length > size - 8:
            raise WeightsError(
                f"{path}: header length {length} does not fit the {size}-byte file "
                "(truncated, or not safetensors)"
            )
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: the safetensors header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the safetensors header is not a JSON object")
    return _shapes(header, path, size - 8 - length)


def _shapes(header: dict, path: Path, data_bytes: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if not 0 <= start <= end <= data_bytes or min(shape, default=0) < 0:
            raise WeightsError(
                f"{path}: tensor {name!r} lies outside the file's {data_bytes} data bytes "
                "(truncated or forged)"
            )
        shapes[name] = shape
    if not shapes:
        raise WeightsError(f"{path} holds no tensors")
    return shapes


def build_architecture(card: ModelCard) -> Any:
    """``create_model`` from the card's architecture, class count and kwargs.

    Raises:
        ModelCardError: The architecture is unknown or refuses one of the card's kwargs.
    """
    from napari_pathreview.models.factory import create_model

    kwargs = {k: v for k, v in card.architecture_kwargs.items() if k not in PROVENANCE_KWARGS}
    try:
        return create_model(card.architecture, card.num_classes, **kwargs)
    except TypeError as error:
        raise ModelCardError(
            f"card field 'architecture_kwargs' {kwargs} is not accepted by architecture "
            f"{card.architecture!r}: {error}"
        ) from error


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def verify_loadable(card: ModelCard, weights: Path) -> None:
    """Check that ``weights`` load strictly into the architecture ``card`` describes.

    Raises:
        WeightsError: Missing or unexpected tensors, or shapes that differ (names them).
        ModelCardError: The architecture or its kwargs are refused.
    """
    stored = read_safetensors_header(weights)
    state = build_architecture(card).state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    # safetensors stores a tensor shared under several names (tied weights) once.
    stored_ptrs = {state[k].data_ptr() for k in stored if k in state}
    missing = sorted(
        k for k in set(expected) - set(stored) if state[k].data_ptr() not in stored_ptrs
    )
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
    problems = []
    if missing:
        problems.append(f"missing tensors {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_listed(unexpected)}")
    if wrong:
        problems.append(
            "shapes differ: " + _listed([f"{k} {stored[k]} ≠ {expected[k]}" for k in wrong])
        )
    if problems:
        raise WeightsError(
            f"{weights} does not fit architecture {card.architecture!r} with "
            f"{card.num_classes} classes and kwargs {card.architecture_kwargs}: "
            + "; ".join(problems)
        )
