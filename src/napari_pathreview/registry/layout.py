"""How one registered model lies on disk: ``card.yaml`` + ``weights.safetensors`` in a folder.

Both the registry (``store``) and moving models between machines (``transfer``) read and verify
such folders; keeping the layout here lets each depend on it without depending on the other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from napari_pathreview.errors import WeightsError
from napari_pathreview.registry.card import ModelCard, ModelCardError

CARD_FILE = "card.yaml"
WEIGHTS_FILE = "weights.safetensors"
LOCK_FILE = ".registry.lock"
TMP_DIR = ".tmp"

__all__ = [
    "CARD_FILE",
    "LOCK_FILE",
    "TMP_DIR",
    "WEIGHTS_FILE",
    "read_card",
    "sha256_file",
    "verified_weights",
    "write_card",
]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed (weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(folder: Path) -> ModelCard:
    """The complete card stored in ``folder`` (ModelCardError naming a bad field)."""
    path = folder / CARD_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ModelCardError(f"{path} is not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise ModelCardError(f"{path} is not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise ModelCardError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        return ModelCard.from_dict(data, complete=True)
    except ModelCardError as error:
        raise ModelCardError(f"{path}: {error}") from error


def model_pickle_refusal(path: Path) -> WeightsError:
    """The error for a pickle where a registered model's weights belong (never unpickled)."""
    return WeightsError(
        f"{path} is a pickle ({path.suffix}); loading pickles can run arbitrary code, so a "
        f"pathreview model holds its weights as {WEIGHTS_FILE} beside {CARD_FILE}. Export the "
        "model where it was trained (`pathreview models export NAME DEST`); a backbone "
        "checkpoint becomes pretrained weights for training with `pathreview models "
        "convert-weights FILE --arch TIMM_ARCH --out FOLDER`"
    )


def write_card(folder: Path, card: ModelCard) -> None:
    """Write ``card.yaml`` (fields in declaration order, readable by people)."""
    text = yaml.safe_dump(card.to_dict(), sort_keys=False, allow_unicode=True)
    (folder / CARD_FILE).write_text(text, encoding="utf-8")


def verified_weights(folder: Path, card: ModelCard) -> Path:
    """The weights file of ``folder`` after its SHA-256 matched the card's."""
    from napari_pathreview.models.pretrained import PICKLE_SUFFIXES

    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = [p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise model_pickle_refusal(pickles[0])
        raise WeightsError(
            f"{weights} is missing; remove the entry (`pathreview models remove {card.ref}`) "
            "and register or import the model again"
        )
    actual = sha256_file(weights)
    if actual != card.weights_sha256:
        raise WeightsError(
            f"{weights} does not match its card "
            f"(sha256 {actual[:12]}… ≠ {card.weights_sha256[:12]}…): "
            "the file was altered or corrupted after registration. Re-import or re-train the "
            "model; "
            "do not edit the card's checksum to silence this."
        )
    return weights
