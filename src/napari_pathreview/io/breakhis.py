"""BreaKHis file names carry the label: ``SOB_<B|M>_<subtype>-<patient>-<magnification>-<seq>.png``.

The dataset has no separate label file, so the name is the ground truth used by readers
(layer metadata), training manifests and the demo sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SUBTYPE_NAMES: dict[str, str] = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes tumor",
    "TA": "tubular adenoma",
    "DC": "ductal carcinoma",
    "LC": "lobular carcinoma",
    "MC": "mucinous carcinoma",
    "PC": "papillary carcinoma",
}
"""Subtype code → name, in the dataset's order (four benign, then four malignant)."""

# Spanhol et al. 2016, "A Dataset for Breast Cancer Histopathological Image Classification",
# IEEE TBME 63(7):1455-1462: Olympus BX-50 microscope, 3.3x relay lens, Samsung SCC-131AN
# camera with 6.5 µm pixels, so µm/px = 6.5 / (objective × 3.3); the "40X" images were
# taken with the 4x objective (total 40X with the 10x eyepiece), and so on.
BREAKHIS_UM_PER_PX: dict[int, float] = {40: 0.492, 100: 0.197, 200: 0.0985, 400: 0.0492}
"""Magnification in the file name → physical pixel size (µm) of a BreaKHis patch."""

BENIGN_SUBTYPES: tuple[str, ...] = ("A", "F", "PT", "TA")
MALIGNANT_SUBTYPES: tuple[str, ...] = ("DC", "LC", "MC", "PC")

_NAME = re.compile(
    r"^SOB_(?P<cls>[BM])_(?P<subtype>A|F|PT|TA|DC|LC|MC|PC)-"
    r"(?P<patient>\d{2}-[0-9A-Z]+)-(?P<mag>40|100|200|400)-(?P<seq>\d+)$",
    re.IGNORECASE,
)


_PATIENT = re.compile(r"^(?P<stem>\d{2}-\d+)[A-Z]*$", re.IGNORECASE)


def patient_stem(patient_id: str) -> str | None:
    """The numeric stem of a BreaKHis patient code ("14-22549AB" → "14-22549"); None when
    ``patient_id`` is not such a code (a MIAS woman, a file name, another dataset's id)."""
    match = _PATIENT.match(patient_id.strip())
    return match["stem"] if match else None


@dataclass(frozen=True)
class BreakhisInfo:
    """What a BreaKHis file name says about the image.

    Attributes:
        binary_label: "benign" or "malignant".
        subtype: Subtype code (A, F, PT, TA, DC, LC, MC, PC).
        magnification: Objective magnification (40, 100, 200 or 400).
        patient_id: Slide/patient code, e.g. "14-22549AB".
        sequence: Image number within the slide and magnification.
    """

    binary_label: str
    subtype: str
    magnification: int
    patient_id: str
    sequence: int

    @property
    def subtype_name(self) -> str:
        """Human-readable subtype (e.g. "ductal carcinoma")."""
        return SUBTYPE_NAMES[self.subtype]

    @property
    def patient_stem(self) -> str:
        """Numeric stem of the patient code ("14-22549AB" → "14-22549").

        BreaKHis gives letter suffixes to different slides that may be the same patient;
        group patient-level splits by this stem when in doubt.
        """
        return patient_stem(self.patient_id) or self.patient_id

    @property
    def um_per_px(self) -> float:
        """Physical pixel size of the patch as captured (700 px wide), from the dataset's
        documented optics; a resized copy's is :func:`.named_size.named_um_per_px`."""
        return BREAKHIS_UM_PER_PX[self.magnification]

    def as_metadata(self) -> dict[str, object]:
        """JSON-able facts for layer metadata (``metadata["pathreview"]``). The pixel size is
        not among them: it depends on the width the file holds (:mod:`.named_size`), and the
        reader decides it with the size the file may state."""
        return {
            "dataset": "BreaKHis",
            "binary_label": self.binary_label,
            "label": self.binary_label,
            "subtype": self.subtype,
            "subtype_name": self.subtype_name,
            "magnification": self.magnification,
            "patient_id": self.patient_id,
        }


def parse_breakhis_name(filename: str | Path) -> BreakhisInfo | None:
    """Parse a BreaKHis file name (any folder, any image extension).

    Args:
        filename: File name or path, e.g. "SOB_M_DC-14-2523-40-010.png".

    Returns:
        The parsed facts, or None when the name does not follow the BreaKHis pattern
        (callers treat such files as unlabelled histology rather than failing).
    """
    stem = Path(str(filename)).stem
    match = _NAME.match(stem)
    if match is None:
        return None
    subtype = match["subtype"].upper()
    label = "benign" if match["cls"].upper() == "B" else "malignant"
    if (label == "benign") != (subtype in BENIGN_SUBTYPES):
        return None  # e.g. "SOB_B_DC-...": contradictory, not a BreaKHis name
    return BreakhisInfo(
        binary_label=label,
        subtype=subtype,
        magnification=int(match["mag"]),
        patient_id=match["patient"].upper(),
        sequence=int(match["seq"]),
    )
