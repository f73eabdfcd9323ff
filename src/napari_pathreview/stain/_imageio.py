"""Reading images for the stain and QC commands, through the project's own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.images import IMAGE_SUFFIXES  # what load_image opens: the one list


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB H×W×3 (level 0 of a pyramid).

    Raises:
        ImageReadError: when the file cannot be decoded.
    """
    from napari_pathreview.io import load_image

    return rgb_of(load_image(Path(path)))


def rgb_of(loaded) -> np.ndarray:
    """A ``LoadedImage`` (``io.load_image``) as uint8 RGB H×W×3 (level 0 of a pyramid)."""
    from napari_pathreview.io import to_rgb_uint8

    return to_rgb_uint8(np.asarray(loaded.data))


def not_histology(modality: str, use: str) -> str | None:
    """Why an image of ``modality`` is kept from an H&E rule (``use``: "QC", "stain
    normalisation"), or None for histology: the one test ``qc``, ``stain fit``, ``stain apply``
    and the Analyze dock's stain fit share.

    A mammogram's black background and grey film read as pen ink and clipping to QC and as
    no stain at all to a normaliser, so such an image is skipped with this reason instead.
    """
    from napari_pathreview.modality import HISTOLOGY

    if modality == HISTOLOGY:
        return None
    return f"{modality} image: {use} is for H&E histology only"


def histology_rgb(path: str | Path, use: str) -> tuple[np.ndarray | None, str | None]:
    """(uint8 RGB, None) of a histology image, or (None, why it is kept from ``use``) for any
    other (:func:`not_histology`): what ``qc``, ``stain fit`` and ``stain apply`` read.

    Raises:
        ImageReadError: when the file cannot be decoded.
    """
    from napari_pathreview.io import load_image

    loaded = load_image(Path(path))
    reason = not_histology(loaded.modality, use)
    return (None, reason) if reason is not None else (rgb_of(loaded), None)


def list_images(folder: str | Path) -> list[Path]:
    """Files directly in or below ``folder`` that ``load_image`` opens (by suffix), sorted."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ImageReadError(f"no such file or folder: {folder}")
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
