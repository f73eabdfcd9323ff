"""Whose image is this? The patient a file belongs to, from what the file itself says.

Patient-level splits in training and the two-film reading of a woman's mammograms both need it;
a manifest's ``patient_id`` column, when there is one, always wins over this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.io._core import is_dicom_file
from napari_pathreview.io.breakhis import parse_breakhis_name
from napari_pathreview.io.mias import mias_refnum, mias_woman


def patient_of_file(path: str | Path) -> str | None:
    """The patient named by a BreaKHis file name, a MIAS reference (her two films are numbered
    consecutively) or a DICOM header's PatientID; None when the file does not say."""
    path = Path(path)
    info = parse_breakhis_name(path.name)
    if info is not None:
        return info.patient_id
    refnum = mias_refnum(path)
    if refnum is not None:
        return str(mias_woman(refnum))
    if is_dicom_file(path):
        return _dicom_patient(path)
    return None


def patient_or_file(path: str | Path, root: str | Path) -> str:
    """A file's split group when nothing names its patient: what the file says
    (:func:`patient_of_file`), else the file itself, named by its path under ``root`` (the data
    folder, a manifest's folder) without suffix, e.g. "benign/001".

    The file's stem alone would merge ``normal/001.png`` and ``benign/001.png`` of a
    class-per-folder tree into one patient. The two-film reading never uses this: a file that
    names no patient stands alone there (``bilateral.pair_films``), and here it is a patient of
    its own, with one film, so it is never paired either.
    """
    path = Path(path)
    named = patient_of_file(path)
    if named is not None:
        return named
    file = Path(os.path.normpath(path))
    try:
        file = file.relative_to(os.path.normpath(root))
    except ValueError:  # outside root (an absolute manifest row): the whole path says who
        file = Path(os.path.abspath(file))
    return file.with_suffix("").as_posix()


def _dicom_header(path: Path, tags: list[str]) -> object | None:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except Exception:  # noqa: BLE001 - an unreadable header says nothing; reading it fails later
        return None


def _text(header: object | None, keyword: str) -> str:
    return str(getattr(header, keyword, "") or "").strip().upper()


def _dicom_patient(path: Path) -> str | None:
    header = _dicom_header(path, ["PatientID"])
    patient = str(getattr(header, "PatientID", "") or "").strip()
    return patient or None


@dataclass(frozen=True)
class FilmSide:
    """Which breast a mammogram shows and from where; None where the file does not say.

    Attributes:
        laterality: "L" or "R".
        view: The view position as the header writes it ("CC", "MLO", …).
    """

    laterality: str | None = None
    view: str | None = None

    @classmethod
    def of(cls, laterality: object, view: object) -> FilmSide:
        """From header or metadata text: laterality other than L/R, and blanks, are unknown."""
        side = str(laterality or "").strip().upper()
        position = str(view or "").strip().upper()
        return cls(side if side in ("L", "R") else None, position or None)


def film_side(path: str | Path) -> FilmSide:
    """The breast and view of a DICOM mammogram (``ImageLaterality``, else the series'
    ``Laterality``; ``ViewPosition``), so a two-film reading pairs left with right in one
    view; other files say neither."""
    path = Path(path)
    if not is_dicom_file(path):
        return FilmSide()
    header = _dicom_header(path, ["ImageLaterality", "Laterality", "ViewPosition"])
    side = _text(header, "ImageLaterality") or _text(header, "Laterality")
    return FilmSide.of(side, _text(header, "ViewPosition"))


def check_one_patient(
    owners: dict[str, tuple[str, int]],
    image: Path,
    patient: str,
    where: str,
    line: int,
    error: type[InvalidInputError] = InvalidInputError,
) -> None:
    """Refuse an image listed under two patients in one CSV (a manifest, a patients list).

    A split by patient would put it on both sides (trained on and tested on), and a two-film
    reading would pair it with either woman's other film. The same image listed again under
    the same patient is fine (a review export lists it once per reviewer).

    Args:
        owners: image (normalised path) → (patient, line) of the rows read so far; updated.
        image: This row's image. patient: its patient_id. where: the CSV, for the message.
        line: This row's line number. error: the caller's own kind of InvalidInputError.
    """
    first_patient, first_line = owners.setdefault(os.path.normpath(image), (patient, line))
    if first_patient != patient:
        raise error(
            f"{where}:{line}: {image} is listed at line {first_line} under patient_id "
            f"{first_patient!r} and here under {patient!r}; an image belongs to one patient: "
            "fix the patient_id"
        )
