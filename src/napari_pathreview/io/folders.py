"""What a folder opened in napari holds: one item per image or DICOM series, each named.

A study exported from a PACS or a scanner is a folder of DICOM files, often without
suffixes: mammography films (one file each) and whole-slide series (one file per pyramid level,
plus label and overview series). Opening the folder opens each film as a layer at its mm scale
and each slide series as its pyramid (``io.dicom_slide``: the series' files only), named by
series description, laterality and view rather than by opaque instance file names. The other
image files directly inside it (a slide, a PNG) open too, and so do the folders a ``DICOMDIR``
in it lists (a hospital CD: ``PT000000/ST000000/SE000000/IM000000``). What cannot be opened
(an unreadable ``.dcm``, a label-only series with no slide of its study) is listed as a
problem, with why, so the reader names it in a notice and opens the rest. Other sub-folders
are not searched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_pathreview.io._core import DICOM_SUFFIXES, IMAGE_SUFFIXES, has_dicom_preamble
from napari_pathreview.io.dicom_slide import (
    DicomFolder,
    dicom_folder,
    left_out_series,
    slide_series,
    volume_file,
)

__all__ = ["FolderContents", "FolderItem", "folder_contents", "holds_dicom"]

PROBE_FILES = 32
""":func:`holds_dicom` looks at the first this many files of a folder."""


@dataclass(frozen=True)
class FolderItem:
    """One thing to open: a file (a DICOM WSI series by its full-resolution instance)."""

    path: Path
    name: str


@dataclass(frozen=True)
class FolderContents:
    """A folder's items in order, and (file, why) for what in it cannot be opened."""

    items: list[FolderItem] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


def holds_dicom(folder: str | Path) -> bool:
    """True for a folder with a DICOM file among its first :data:`PROBE_FILES` files."""
    folder = Path(str(folder))
    if not folder.is_dir():
        return False
    files = [p for p in sorted(folder.iterdir()) if p.is_file()][:PROBE_FILES]
    return any(_is_dicom_candidate(p) and has_dicom_preamble(p) for p in files)


def _is_dicom_candidate(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or path.suffix.lower() not in IMAGE_SUFFIXES


def folder_contents(folder: str | Path) -> FolderContents:
    """The images and DICOM series directly inside ``folder``, and in the folders its
    ``DICOMDIR`` (a CD or PACS export) lists (see the module docstring)."""
    folder = Path(folder)
    items: list[FolderItem] = []
    problems: list[tuple[Path, str]] = []
    for part in [folder, *_dicomdir_folders(folder, problems)]:
        items.extend(_items(part, part == folder, problems))
    return FolderContents(_unique_names(items, folder), problems)


def _dicomdir_folders(folder: Path, problems: list[tuple[Path, str]]) -> list[Path]:
    """The folders (other than ``folder``) holding the files its DICOMDIR lists, sorted."""
    from pydicom.fileset import FileSet

    dicomdir = next((p for p in folder.iterdir() if p.name.upper() == "DICOMDIR"), None)
    if dicomdir is None or not dicomdir.is_file():
        return []
    try:
        listed = {Path(instance.path).parent for instance in FileSet(dicomdir)}
    except Exception as error:  # pydicom raises many kinds on a damaged DICOMDIR
        problems.append((dicomdir, f"not a readable DICOMDIR ({type(error).__name__})"))
        return []
    return sorted(p for p in listed if p != folder and p.is_dir())


def _items(folder: Path, opened: bool, problems: list[tuple[Path, str]]) -> list[FolderItem]:
    """One folder's slide series, films and other image files; ``opened``: the folder the
    user opened (a lone slide series is named after it)."""
    dicom = dicom_folder(folder)
    problems.extend((path, why) for path, why in dicom.refused if path not in dicom.images)
    slides = _slide_items(folder if opened else None, dicom, problems)
    films = [FolderItem(path, _film_name(header)) for path, header in dicom.images.items()]
    taken = {*dicom.images, *(f for headers in dicom.series.values() for f in headers)}
    others = [
        FolderItem(path, path.stem)
        for path in sorted(folder.iterdir())
        if path.is_file()
        and path not in taken
        and path.suffix.lower() in IMAGE_SUFFIXES - DICOM_SUFFIXES
    ]
    return slides + films + others


def _slide_items(
    folder: Path | None, dicom: DicomFolder, problems: list[tuple[Path, str]]
) -> list[FolderItem]:
    """One item per WSI series holding a pyramid (named after ``folder`` when it is the only
    one, else by series); label-only series with no slide of their study beside them are
    problems."""
    slides = slide_series(dicom.series)
    problems.extend(
        (first, f"DICOM WSI series {uid} holds only labels or overviews")
        for uid, first in left_out_series(dicom.series, slides).items()
    )
    items = []
    for headers in slides.values():
        base = volume_file(headers)
        if base is None:  # slide_series keeps only series with a pyramid
            continue
        alone = folder is not None and len(slides) == 1  # as ``io.slide_folders`` names it
        items.append(FolderItem(base, folder.name if alone else _series_name(headers[base])))
    return items


def _text(header: Any, keyword: str) -> str:
    return str(getattr(header, keyword, "") or "").strip()


def _series_name(header: Any) -> str:
    """ "SeriesDescription", else "series N", else ""."""
    number = _text(header, "SeriesNumber")
    return _text(header, "SeriesDescription") or (f"series {number}" if number else "")


def _film_name(header: Any) -> str:
    """ "R CC" (laterality and view), after the series description when there is one."""
    laterality = _text(header, "ImageLaterality") or _text(header, "Laterality")
    parts = [_text(header, "SeriesDescription"), laterality, _text(header, "ViewPosition")]
    return " ".join(part for part in parts if part)


def _unique_names(items: list[FolderItem], root: Path) -> list[FolderItem]:
    """Each item named once: a missing or repeated name gets its file's name (its path under
    ``root``: a DICOMDIR export names every file IM000000)."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.name] = counts.get(item.name, 0) + 1
    unique = []
    for item in items:
        where = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        if not item.name:
            unique.append(FolderItem(item.path, where or item.path.name))
        elif counts[item.name] > 1:
            unique.append(FolderItem(item.path, f"{item.name} ({where or item.path.name})"))
        else:
            unique.append(item)
    return unique
