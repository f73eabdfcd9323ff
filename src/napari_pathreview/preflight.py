"""Checks a command runs before it imports torch: files, output folders, the model's card.

A missing file or an unknown model is the commonest mistake and should be reported in a
fraction of a second, not after the deep-learning stack has loaded. Everything here reads
file headers and YAML (numpy, Pillow and tifffile at most), never weights; pixels only as
far as the reader's modality rule needs them (a sample of a colour image).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ImageProbe:
    """What one read of an image file's header tells before any model work.

    Attributes:
        modality: The modality the reader will find (:func:`probe_modality`), None when the
            file does not tell.
        frames: How many frames the reader finds, from the header: a DICOM's
            (``io.images.dicom_frames``), a TIFF's frame axes (``io.slides.tiff_header``); 1 for
            any other image, and for an unreadable file (the reader says why).
    """

    modality: str | None
    frames: int = 1


def probe_image(path: str | os.PathLike[str]) -> ImageProbe:
    """The modality and frame count of an image file, from one read of its header: a command
    that needs both (``predict --frame``) probes each file once. See :func:`probe_modality`.
    """
    from napari_pathreview.io._core import RASTER_SUFFIXES, SLIDE_SUFFIXES, is_dicom_file
    from napari_pathreview.io.breakhis import parse_breakhis_name

    file = Path(path)
    suffix = file.suffix.lower()
    named = parse_breakhis_name(file.name) is not None
    if is_dicom_file(file):
        probe = _dicom_probe(file)  # DICOM whatever its name, as ``io.load_image`` finds it
    elif suffix in (".tif", ".tiff", ".svs"):
        probe = _tiff_probe(file)
    elif suffix in RASTER_SUFFIXES:
        probe = ImageProbe(HISTOLOGY if named else _raster_modality(file))
    else:
        probe = ImageProbe(HISTOLOGY if suffix in SLIDE_SUFFIXES else None)
    return ImageProbe(HISTOLOGY, probe.frames) if named else probe


def probe_modality(path: str | os.PathLike[str]) -> str | None:
    """The modality of an image file as the reader will find it, or None when it cannot tell.

    The reader's own rule decides (``io._core.modality_of``): single-channel rasters (PGM,
    16-bit PNG) are mammograms, colour ones histology unless R = G = B (a film saved as
    colour: ``io._core.grey_in_colour``, judged on a sample of the pixels); a TIFF by its first
    series (``io.slides.tiff_header``: a stack of grey frames or a film with a thumbnail page
    is a mammogram, an H&E pyramid histology); DICOM other than slide microscopy (``SM``) or colour
    (``SamplesPerPixel`` 3) is a mammogram; other slide formats and BreaKHis names are histology.
    """
    return probe_image(path).modality


def _tiff_probe(file: Path) -> ImageProbe:
    from napari_pathreview.io.slides import tiff_header

    try:
        return ImageProbe(*tiff_header(file))
    except ImageReadError:  # a vendor TIFF tifffile cannot parse is OpenSlide's: a slide
        return ImageProbe(HISTOLOGY if file.is_file() and file.stat().st_size else None)


def _raster_modality(file: Path) -> str | None:
    import numpy as np
    from PIL import Image

    from napari_pathreview.io._core import grey_in_colour

    try:
        with Image.open(file) as image:
            if image.mode in _GREY_MODES:
                return MAMMOGRAM
            if image.mode not in ("RGB", "RGBA"):
                return HISTOLOGY
            colour = np.asarray(image)
    except Exception:  # noqa: BLE001 - the full reader reports the real problem later
        return None
    return MAMMOGRAM if grey_in_colour(colour) else HISTOLOGY


def _dicom_probe(file: Path) -> ImageProbe:
    try:
        import pydicom

        from napari_pathreview.io.images import dicom_frames

        dataset = pydicom.dcmread(file, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - the full reader reports the real problem later
        return ImageProbe(None)
    colour = int(getattr(dataset, "SamplesPerPixel", 1) or 1) >= 3  # as io.mammograms reads it
    slide = str(getattr(dataset, "Modality", "")).upper() == "SM"
    return ImageProbe(HISTOLOGY if slide or colour else MAMMOGRAM, dicom_frames(dataset))


CLI_OVERRIDE = "pass --allow-modality-mismatch to run it anyway"


def check_modalities(
    card: Any,
    paths: Sequence[Path],
    allow_mismatch: bool = False,
    override: str | None = CLI_OVERRIDE,
    probes: Mapping[Path, ImageProbe] | None = None,
) -> None:
    """Refuse images whose modality differs from the model's, as the Analyze widget does.

    Args:
        override: How the caller lets a user run it anyway (None where it cannot: a widget).
        probes: Images the caller has probed already (:func:`probe_image`), not read again.

    Raises:
        ModalityMismatchError: Naming the images and the model, unless ``allow_mismatch``.
    """
    from napari_pathreview.inference.analysis import ModalityMismatchError

    known = probes or {}
    modalities = {p: known[p].modality if p in known else probe_modality(p) for p in paths}
    wrong = [p for p in paths if modalities[p] is not None and modalities[p] != card.modality]
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
