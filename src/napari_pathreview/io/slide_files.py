"""Which files a slide is read from, and a cheap record of their state (size, modified time).

A slide is not always one file: a 3DHISTECH ``.mrxs`` is an index beside a folder of the same
stem holding ``Slidedat.ini`` and the ``Data*.dat`` tiles; a Hamamatsu ``.vms``/``.vmu`` names
its JPEG/raw image files; a DICOM WSI series is the instance files of its folder (``wsidicom``
is given files directly inside one folder: ``dicom_slide.series_files``). A re-scan or a
re-export may rewrite any of those and leave the named file's size as it was, so whatever
remembers a slide's result (a cohort's resume key, the slide cache's ``SlideSource.fingerprint``)
must look at every one of them. Only ``stat`` is called (and a ``.vms``/``.vmu`` index read):
no file is opened as a slide.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from napari_pathreview.io._core import DICOM_SUFFIXES, has_dicom_preamble

__all__ = ["files_state", "slide_files", "slide_state", "modified_after"]

HAMAMATSU_INDEX = (".vms", ".vmu")
"""Hamamatsu text indexes naming the image files beside them (``ImageFile(x,y)=…``)."""

_HAMAMATSU_KEYS = ("ImageFile", "MapFile", "OptimisationFile", "MacroImage")


def slide_files(path: Path) -> list[Path]:
    """The files a slide at ``path`` is read from (``path`` first for a file; sorted after).

    A folder (a DICOM WSI folder) and a DICOM instance file stand for the files directly in
    that folder: a change to any of them, another series' included, counts as the slide's.
    A path that does not exist is itself (its state records it as missing).
    """
    path = Path(path)
    if path.is_dir():
        return _files_in(path)
    suffix = path.suffix.lower()
    if suffix == ".mrxs":
        return [path, *_files_in(path.with_suffix(""))]
    if suffix in HAMAMATSU_INDEX and path.is_file():
        return [path, *sorted(set(_hamamatsu_files(path)) - {path})]
    if path.is_file() and (suffix in DICOM_SUFFIXES or _is_dicom(path)):
        return [path, *(f for f in _files_in(path.parent) if f != path)]
    return [path]


def slide_state(path: Path) -> str:
    """16 hex digits that change when any of the slide's files is added, removed, resized or
    rewritten (a new modification time, to the nanosecond), for every file of
    :func:`slide_files`; the same for the same files untouched. Names are taken relative to
    the slide's folder, so the state is that of the files, wherever the path was typed from."""
    path = Path(path)
    return files_state(slide_files(path), path if path.is_dir() else path.parent)


def files_state(files: Iterable[Path], base: Path) -> str:
    """:func:`slide_state` of ``files`` in the order given, their names relative to ``base``
    (a missing or unreadable file recorded as such)."""
    facts = []
    for file in files:
        try:
            stat = file.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # missing or unreadable: recorded as such
            size = mtime = None
        facts.append([_relative(file, base), size, mtime])
    text = json.dumps(facts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def modified_after(path: Path, when_ns: int) -> list[Path]:
    """The slide's files modified after ``when_ns`` (ns since the epoch), or missing: which of
    them a result written at that time cannot have seen."""
    changed = []
    for file in slide_files(Path(path)):
        try:
            if file.stat().st_mtime_ns > when_ns:
                changed.append(file)
        except OSError:
            changed.append(file)
    return changed


def _files_in(folder: Path) -> list[Path]:
    """The files directly in ``folder`` (none when it is not a folder), sorted."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return []


def _is_dicom(path: Path) -> bool:
    try:
        return has_dicom_preamble(path)
    except OSError:
        return False


def _hamamatsu_files(index: Path) -> list[Path]:
    """The files a ``.vms``/``.vmu`` index names (``KEY=name`` and ``KEY(x,y)=name`` lines)."""
    try:
        text = index.read_text(encoding="latin-1")
    except OSError:
        return []
    named = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.split("(")[0].strip() in _HAMAMATSU_KEYS and value.strip():
            named.append(index.parent / value.strip())
    return named


def _relative(file: Path, base: Path) -> str:
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.as_posix()
