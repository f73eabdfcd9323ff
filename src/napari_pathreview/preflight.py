"""Checks a command runs before it imports torch: files, output folders, the model's card.

A missing file or an unknown model is the commonest mistake and should be reported in a
fraction of a second, not after the deep-learning stack has loaded. Everything here reads
file headers and YAML only (numpy and Pillow at most), never pixels or weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_pathreview.errors import DestinationExistsError, ImageReadError, InvalidInputError

logger = logging.getLogger(__name__)

HISTOLOGY, MAMMOGRAM = "histology", "mammogram"
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def require_file(path: str | os.PathLike[str], what: str = "image") -> Path:
    """``path`` as a Path after checking it is a readable file.

    Raises:
        ImageReadError: The file is missing, a folder, or unreadable; the message names it.
    """
    file = Path(path)
    if not file.exists():
        raise ImageReadError(f"{what} not found: {file}")
    if not file.is_file():
        raise ImageReadError(f"{what} {file} is a folder, not a file")
    if not os.access(file, os.R_OK):
        raise ImageReadError(f"{what} {file} is not readable (permission denied)")
    return file


def file_problem(path: str | os.PathLike[str], what: str = "image") -> str | None:
    """Why :func:`require_file` would refuse ``path``, or None when it is fine."""
    try:
        require_file(path, what)
    except ImageReadError as error:
        return str(error)
    return None


def output_folder(path: str | os.PathLike[str], what: str = "--out", create: bool = True) -> Path:
    """The output folder ``path``, created (with parents) unless ``create`` is false.

    Without ``create`` only what can be known in advance is checked: ``path`` is not a file,
    and the nearest existing ancestor is a writable folder.

    Raises:
        InvalidInputError: ``path`` or a parent is a file, or cannot be created (permissions).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"{what} {folder} is a file, not a folder")
    if not create:
        ancestor = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
        if not ancestor.is_dir():
            raise InvalidInputError(f"{what} {folder}: {ancestor} is a file, not a folder")
        if not os.access(ancestor, os.W_OK):
            raise InvalidInputError(f"{what} {folder}: {ancestor} is not writable")
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as error:
        raise InvalidInputError(
            f"{what} {folder}: a parent of it is a file, not a folder ({error.filename})"
        ) from error
    except OSError as error:
        raise InvalidInputError(
            f"{what} {folder} cannot be created: {error.strerror or error}"
        ) from error
    if not os.access(folder, os.W_OK):
        raise InvalidInputError(f"{what} {folder} is not writable (permission denied)")
    return folder


def output_file(
    path: str | os.PathLike[str],
    what: str = "--out",
    example: str | None = None,
    *,
    overwrite: bool = False,
    create: bool = True,
) -> Path:
    """A file to write: its parent folder is created; a folder at ``path`` is refused (naming
    a file in it, ``example``, the user could give instead), and so is an existing file unless
    ``overwrite``: an output never silently replaces a file the user may still need.

    Args:
        overwrite: Replace an existing file. A CLI passes its ``--force`` (and reports the
            error under that flag with ``errors.reported_as(FORCE_FLAG)``); a report the
            command regenerates from its inputs on every run may pass True.
        create: Create the parent folder now; without it only what can be known in advance
            is checked (:func:`output_folder`), for a command that may still fail before writing.

    Raises:
        DestinationExistsError: ``path`` is an existing file and not ``overwrite``.
        InvalidInputError: ``path`` is a folder, or its folder cannot be made.
    """
    file = Path(path)
    if file.is_dir():
        instead = f", e.g. {file / example}" if example else ""
        raise InvalidInputError(f"{what} {file} is a folder; give a file name{instead}")
    if not overwrite and (file.exists() or file.is_symlink()):
        raise DestinationExistsError(file)
    output_folder(file.parent, f"the folder of {what}", create=create)
    return file


def model_card(ref: str, registry: str | os.PathLike[str] | None = None) -> Any:
    """The registered card of ``NAME[@VERSION]`` (YAML only, no torch).

    Raises:
        ModelNotFoundError: No such model or version (the message lists what exists).
        InvalidInputError: A malformed reference.
    """
    from napari_pathreview.registry import ModelRegistry, parse_model_ref

    name, version = parse_model_ref(ref)
    return ModelRegistry(registry).card(name, version)


def probe_modality(path: str | os.PathLike[str]) -> str | None:
    """The modality of an image file from its header alone, or None when it cannot tell.

    Colour rasters and slides are histology; single-channel rasters (PGM, 16-bit PNG) and
    DICOM other than slide microscopy (``SM``) are mammograms. BreaKHis names are histology.
    """
    from napari_pathreview.io._core import (
        DICOM_SUFFIXES,
        RASTER_SUFFIXES,
        SLIDE_SUFFIXES,
    )
    from napari_pathreview.io.breakhis import parse_breakhis_name

    file = Path(path)
    suffix = file.suffix.lower()
    if parse_breakhis_name(file.name) is not None:
        return HISTOLOGY
    if suffix in DICOM_SUFFIXES:
        return _dicom_modality(file)
    if suffix in RASTER_SUFFIXES or suffix in (".tif", ".tiff"):
        try:
            from PIL import Image

            with Image.open(file) as image:
                mode, frames = image.mode, getattr(image, "n_frames", 1)
        except Exception:  # noqa: BLE001 - the full reader reports the real problem later
            return HISTOLOGY if suffix in SLIDE_SUFFIXES else None
        if frames > 1 and suffix not in RASTER_SUFFIXES:
            return HISTOLOGY  # a pyramidal TIFF is a slide
        return MAMMOGRAM if mode in _GREY_MODES else HISTOLOGY
    if suffix in SLIDE_SUFFIXES:
        return HISTOLOGY
    return None


def _dicom_modality(file: Path) -> str | None:
    try:
        import pydicom

        dataset = pydicom.dcmread(file, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - the full reader reports the real problem later
        return None
    return HISTOLOGY if str(getattr(dataset, "Modality", "")).upper() == "SM" else MAMMOGRAM


CLI_OVERRIDE = "pass --allow-modality-mismatch to run it anyway"


def check_modalities(
    card: Any,
    paths: Sequence[Path],
    allow_mismatch: bool = False,
    override: str | None = CLI_OVERRIDE,
) -> None:
    """Refuse images whose modality differs from the model's, as the Analyze widget does.

    Args:
        override: How the caller lets a user run it anyway (None where it cannot: a widget).

    Raises:
        ModalityMismatchError: Naming the images and the model, unless ``allow_mismatch``.
    """
    from napari_pathreview.inference.analysis import ModalityMismatchError

    wrong = [p for p in paths if (m := probe_modality(p)) is not None and m != card.modality]
    if not wrong:
        return
    other = MAMMOGRAM if card.modality == HISTOLOGY else HISTOLOGY
    names = ", ".join(str(p) for p in wrong[:5])
    names += f" (+{len(wrong) - 5} more)" if len(wrong) > 5 else ""
    message = (
        f"model {card.ref} was trained on {card.modality} images but {names} "
        f"{'is a' if len(wrong) == 1 else 'are'} {other} image{'s' if len(wrong) > 1 else ''}; "
        f"pick a {other} model" + (f", or {override}" if override else "")
    )
    if not allow_mismatch:
        raise ModalityMismatchError(message)
    logger.warning("%s (allowed by --allow-modality-mismatch)", message)
