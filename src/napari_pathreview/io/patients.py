"""Whose image is this? The patient a file belongs to, from what the file itself says.

Patient-level splits in training and the two-film reading of a woman's mammograms both need it;
a manifest's ``patient_id`` column, when there is one, always wins over this.
"""

from __future__ import annotations

from pathlib import Path

from napari_pathreview.io._core import DICOM_SUFFIXES
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
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _dicom_patient(path)
    return None


def _dicom_patient(path: Path) -> str | None:
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception:  # noqa: BLE001 - an unreadable header names no patient; reading it fails later
        return None
    patient = str(header.get("PatientID", "") or "").strip()
    return patient or None
