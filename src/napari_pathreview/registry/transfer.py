"""Moving a registered model between machines: a folder or a tar archive of card + weights.

Archives are read member by member: only ``card.yaml`` and ``weights.safetensors`` (optionally
inside one top-level folder) are accepted, as regular files, so an archive cannot write outside
the registry (no links, no absolute or ``..`` paths) or smuggle in a pickle.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from napari_pathreview._atomic import atomic_path
from napari_pathreview.errors import DestinationExistsError, InvalidInputError, WeightsError
from napari_pathreview.models.pretrained import PICKLE_SUFFIXES
from napari_pathreview.registry.card import ModelCard
from napari_pathreview.registry.layout import (
    CARD_FILE,
    WEIGHTS_FILE,
    model_pickle_refusal,
    read_card,
    verified_weights,
)

ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz")
OTHER_ARCHIVE_SUFFIXES: tuple[str, ...] = (".zip", ".7z", ".rar", ".tar.bz2", ".tar.xz", ".tar.zst")
"""Destinations that name an archive export cannot write: without this check ``out.zip`` became
a folder called ``out.zip``."""
MAX_MEMBER_BYTES = 8 << 30


def archive_suffix(path: Path, suffixes: tuple[str, ...] = ARCHIVE_SUFFIXES) -> str | None:
    """The suffix of ``suffixes`` (by default the archives export writes: ``.tar``,
    ``.tar.gz``, ``.tgz``) that ``path`` ends with, case-blind, or None."""
    return next((s for s in suffixes if path.name.lower().endswith(s)), None)


def is_archive(path: Path) -> bool:
    return archive_suffix(path) is not None


def export_model(folder: Path, card: ModelCard, dest: Path, overwrite: bool = False) -> Path:
    """Copy a model folder to ``dest``: an archive, or a folder ``<name>-v<version>`` in dest.

    Raises:
        DestinationExistsError: ``dest`` is an existing archive file and not ``overwrite``
            (a re-export must not silently replace the copy someone else may be reading).
        InvalidInputError: another archive type, or an existing export folder (never replaced).
    """
    stem = f"{card.name}-v{card.version}"
    other = archive_suffix(dest, OTHER_ARCHIVE_SUFFIXES)
    if other is not None and not dest.is_dir():
        raise InvalidInputError(
            f"{dest}: models export writes .tar, .tar.gz or .tgz archives, or a folder; "
            f"name it {dest.name[: -len(other)]}.tar.gz (or give a folder)"
        )
    if is_archive(dest):
        if dest.is_file() and not overwrite:
            raise DestinationExistsError(dest)
        return _write_archive(folder, stem, dest)
    target = dest / stem if dest.is_dir() else dest
    if target.exists():
        raise InvalidInputError(f"{target} already exists; choose another destination")
    target.mkdir(parents=True)
    for member in (CARD_FILE, WEIGHTS_FILE):
        shutil.copy2(folder / member, target / member)
    return target


def _write_archive(folder: Path, stem: str, dest: Path) -> Path:
    """Write ``dest`` through a ``.partial`` file renamed into place (``_atomic``), so a reader
    never sees half an archive; a failed write leaves no ``.partial`` behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    mode = "w" if archive_suffix(dest) == ".tar" else "w:gz"
    with atomic_path(dest) as partial, tarfile.open(partial, mode) as archive:
        for member in (CARD_FILE, WEIGHTS_FILE):
            archive.add(folder / member, arcname=f"{stem}/{member}", recursive=False)
    return dest


def check_model_source(source: Path) -> None:
    """Refuse what cannot be an exported model by its name alone: a missing path, a pickle,
    a file that is not a ``.tar``/``.tar.gz`` archive.

    Raises:
        WeightsError: a pickle.
        InvalidInputError: a missing path, or a file of another kind.
    """
    if not source.exists():
        raise InvalidInputError(f"{source} does not exist")
    if source.is_file() and source.suffix.lower() in PICKLE_SUFFIXES:
        raise model_pickle_refusal(source)
    if not source.is_dir() and not is_archive(source):
        raise InvalidInputError(
            f"{source} is neither a model folder nor a .tar/.tar.gz archive made by "
            "`pathreview models export`"
        )


def unpack_model(source: Path, staging: Path) -> ModelCard:
    """Copy an exported model into ``staging`` and return its verified card.

    ``source`` has passed :func:`check_model_source` (``ModelRegistry.import_model`` checks
    it before making ``staging``): a model folder or a ``.tar``/``.tar.gz`` archive.

    Raises:
        WeightsError: a pickle inside it instead of safetensors, or weights that fail the
            card's SHA-256.
        InvalidInputError: an archive with unsafe members or without a card and weights.
    """
    if source.is_dir():
        _copy_folder(source, staging)
    else:
        _extract_archive(source, staging)
    card = read_card(staging)
    try:
        verified_weights(staging, card)
    except WeightsError as error:  # both files were staged: the source's pair disagrees
        raise WeightsError(
            f"{source}: {WEIGHTS_FILE} does not match the SHA-256 in its {CARD_FILE}, so the "
            "copy is damaged or incomplete; export the model again where it was trained "
            "(`pathreview models export`). Nothing was imported"
        ) from error
    return card


def _copy_folder(source: Path, staging: Path) -> None:
    if not (source / WEIGHTS_FILE).is_file():
        pickles = [p for p in source.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise model_pickle_refusal(pickles[0])
    for member in (CARD_FILE, WEIGHTS_FILE):
        if not (source / member).is_file():
            raise InvalidInputError(f"{source} has no {member}; is it an exported model folder?")
        shutil.copyfile(source / member, staging / member)


def _extract_archive(source: Path, staging: Path) -> None:
    found: set[str] = set()
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive.getmembers():
                name = _safe_member_name(member, source)
                if name is None:
                    continue
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - regular files always have data
                    raise InvalidInputError(f"{source}: cannot read {member.name}")
                with handle, open(staging / name, "wb") as out:
                    shutil.copyfileobj(handle, out)
                found.add(name)
    except tarfile.TarError as error:  # its text lists every compression tried, over lines
        raise InvalidInputError(
            f"{source} is not a readable tar archive ({type(error).__name__}); give a .tar or "
            ".tar.gz made by `pathreview models export`, or its unpacked folder"
        ) from error
    except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as error:
        raise InvalidInputError(
            f"{source} is cut short or damaged ({error}); copy the archive again, or export "
            "the model again where it was trained (`pathreview models export`). Nothing was "
            "imported"
        ) from error
    missing = {CARD_FILE, WEIGHTS_FILE} - found
    if missing:
        raise InvalidInputError(f"{source} lacks {sorted(missing)}; is it made by `models export`?")


def _safe_member_name(member: tarfile.TarInfo, source: Path) -> str | None:
    """The file name to extract for ``member``; None for its folder; raise for anything unsafe."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or len(path.parts) > 2:
        raise InvalidInputError(f"{source}: refusing unsafe archive member {member.name!r}")
    if member.isdir():
        return None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise model_pickle_refusal(Path(path.name))
    if not member.isfile() or path.name not in (CARD_FILE, WEIGHTS_FILE):
        raise InvalidInputError(
            f"{source}: unexpected archive member {member.name!r}; an exported model holds only "
            f"{CARD_FILE} and {WEIGHTS_FILE}"
        )
    if member.size > MAX_MEMBER_BYTES:
        raise WeightsError(f"{source}: {member.name} is implausibly large ({member.size} bytes)")
    return path.name
