"""What the folders given as slides stand for (``pathreview predict-slides FOLDER``).

A folder stands for the slide files directly inside it (by suffix) and for its DICOM
whole-slide series, one slide per SeriesInstanceUID (each opens on its own: wsidicom is given
that series' files only). A DICOM slide is named by its folder when that folder holds no other
slide, else by the series' full-resolution instance file. Each sub-folder
adds its DICOM WSI series the same way; sub-folders are not searched for slide files.

What looks like a slide but cannot be used — a DICOM image of another kind (a mammogram), an
unreadable ``.dcm``, a series without pyramid levels and no slide of its study beside it,
slide files in a sub-folder — is returned as refused, with why, so callers report it rather
than drop it. A label/overview-only series beside a pyramid of its study is that slide's (some
scanners write them as series of their own) and is neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from napari_pathreview.io._core import SLIDE_SUFFIXES
from napari_pathreview.io.dicom_slide import (
    DicomFolder,
    dicom_folder,
    left_out_series,
    slide_series,
    volume_file,
)

__all__ = ["Refused", "SlideList", "expand_folders"]


@dataclass(frozen=True)
class Refused:
    """Something in a given folder that looks like a slide but is not used, and why."""

    path: Path
    why: str


@dataclass(frozen=True)
class SlideList:
    """The slides the given paths stand for (in order, each once) and what was refused."""

    slides: list[Path] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def expand_folders(items: Iterable[str | Path]) -> SlideList:
    """Files as given; each folder expanded as the module docstring says (sorted)."""
    slides: list[Path] = []
    refused: list[Refused] = []
    for item in map(Path, items):
        if item.is_dir():
            found = _folder(item)
            slides.extend(found.slides)
            refused.extend(found.refused)
        else:
            slides.append(item)
    unique = {str(p.resolve()): p for p in reversed(slides)}  # a file named twice runs once
    return SlideList([p for p in slides if unique[str(p.resolve())] is p], refused)


def _is_slide_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SLIDE_SUFFIXES


def _folder(folder: Path) -> SlideList:
    entries = sorted(folder.iterdir())
    slides = [p for p in entries if _is_slide_file(p)]
    refused: list[Refused] = []
    for sub in (p for p in entries if p.is_dir()):
        inner = dicom_folder(sub)
        if inner.series:  # a DICOM slide folder: its strays are reported too
            found = _dicom_slides(sub, inner, alone=True)
            slides.extend(found.slides)
            refused.extend(found.refused)
        if any(_is_slide_file(p) for p in sub.iterdir()):
            why = "a folder of slide files inside a given folder (sub-folders are not searched)"
            refused.append(Refused(sub, f"{why}; name it on the command line to run them"))
    found = _dicom_slides(folder, dicom_folder(folder), alone=not slides)
    return SlideList(sorted(slides + found.slides), found.refused + refused)


def _dicom_slides(folder: Path, dicom: DicomFolder, alone: bool) -> SlideList:
    """One slide per WSI series that has pyramid levels; ``alone``: the folder holds no other
    slide, so one series there is named by the folder."""
    refused = [Refused(path, why) for path, why in dicom.refused]
    slides_by_series = slide_series(dicom.series)
    for uid, first in left_out_series(dicom.series, slides_by_series).items():
        why = f"DICOM WSI series {uid} holds no pyramid (VOLUME) instance, only labels or"
        refused.append(Refused(first, f"{why} overviews, and no slide of its study is beside it"))
    slides = [volume_file(headers) for headers in slides_by_series.values()]
    if alone and len(slides) == 1:  # a label/overview series beside it is its own
        slides = [folder]
    return SlideList(slides, refused)
