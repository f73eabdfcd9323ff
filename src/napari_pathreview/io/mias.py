"""mini-MIAS annotations: ``Info.txt`` (and the ``labels.csv`` tables derived from it).

Each row is ``REFNUM BG CLASS SEVERITY X Y RADIUS``. The centre's origin is the
**bottom-left** corner of the 1024×1024 image, so on the image as stored (row 0 at the
top, as numpy and napari index it) the centre is at ``row = 1024 - y``, ``col = x``.
Normal images have class NORM and no severity or centre; a few calcification clusters
have a class and severity but no centre (too widespread to circle).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.pixel_origin import resample_centres

MIAS_SIZE = 1024
"""Edge of every mini-MIAS image in pixels (200 µm per pixel)."""

TISSUE_NAMES = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
CLASS_NAMES = {
    "CALC": "calcification",
    "CIRC": "well-defined/circumscribed mass",
    "SPIC": "spiculated mass",
    "MISC": "other, ill-defined mass",
    "ARCH": "architectural distortion",
    "ASYM": "asymmetry",
    "NORM": "normal",
}
SEVERITY_NAMES = {"B": "benign", "M": "malignant"}

_REFNUM = re.compile(r"^(mdb\d{3})", re.IGNORECASE)


@dataclass(frozen=True)
class MiasAnnotation:
    """One row of Info.txt: one abnormality (or the single NORM row of a normal image).

    Attributes:
        refnum: Image reference, e.g. "mdb001".
        tissue: Background tissue code: F, G or D.
        abnormality: Class code: CALC, CIRC, SPIC, MISC, ARCH, ASYM or NORM.
        severity: "B", "M", or None for normal images.
        x: Centre column (pixels), or None.
        y: Centre height from the image's bottom edge (pixels), or None.
        radius: Radius enclosing the abnormality (pixels), or None.
    """

    refnum: str
    tissue: str
    abnormality: str
    severity: str | None
    x: int | None
    y: int | None
    radius: int | None

    @property
    def row(self) -> int | None:
        """Centre row on the stored image (origin top-left): ``1024 - y``."""
        return None if self.y is None else MIAS_SIZE - self.y

    @property
    def col(self) -> int | None:
        """Centre column on the stored image: ``x``."""
        return self.x

    @property
    def has_roi(self) -> bool:
        """True when the row gives a centre and radius that can be drawn."""
        return self.x is not None and self.y is not None and self.radius is not None

    @property
    def patient(self) -> int:
        """Woman number: MIAS numbers her two breasts consecutively (mdb001/mdb002 → 1)."""
        return mias_woman(self.refnum)


def mias_refnum(path: str | Path) -> str | None:
    """The MIAS reference ("mdb028") of an image path, or None for other names."""
    match = _REFNUM.match(Path(str(path)).name)
    return match.group(1).lower() if match else None


def mias_woman(refnum: str) -> int:
    """The woman a MIAS reference belongs to: her two breasts are numbered consecutively
    (mdb001/mdb002 → 1)."""
    return (int(refnum[3:]) + 1) // 2


# Info.txt coordinates and radii are pixels of the 1024×1024 mini-MIAS images (MIAS_SIZE).
MIAS_MM_PER_PX = 0.2
"""mini-MIAS films: 200 µm per pixel at 1024² (Suckling et al. 1994, the dataset's README)."""


def film_circle(
    annotation: Any,
    film_shape: Sequence[int],
    source_shape: Sequence[int] = (MIAS_SIZE, MIAS_SIZE),
) -> tuple[float, float, float, float]:
    """An ROI circle in the pixels of its film as stored: (row, col, row radius, col radius).

    Info.txt gives the centre (``row = 1024 - y``, :attr:`MiasAnnotation.row`) and radius in
    pixels of the 1024² film; a copy resized whole shows the same breast, so pixel centres
    map onto pixel centres (``pixel_origin.resample_centres``) and the radius scales by the
    same factor along each axis. The one rule the viewer's ellipses (``io.layers``), ROI
    masks (``explain.masks.mask_from_mias``) and training's circles
    (``training.datasets.from_mias``) share, so all three land on the same pixels.

    Args:
        annotation: An object with ``row``, ``col`` and ``radius`` (a drawable
            :class:`MiasAnnotation`, or a circle already on another grid).
        film_shape: (rows, cols) of the film as stored (a 256² copy, say).
        source_shape: (rows, cols) the circle's coordinates refer to: 1024² for Info.txt.
    """
    factors = np.asarray(film_shape[:2], float) / np.asarray(source_shape[:2], float)
    row, col = resample_centres([annotation.row, annotation.col], factors)
    radius = float(annotation.radius)
    return float(row), float(col), radius * float(factors[0]), radius * float(factors[1])


def _optional_int(text: str | None, what: str = "value") -> int | None:
    """A pixel coordinate or radius; NaN, inf and values off the 1024² image are refused."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(number) or not 0 <= number <= MIAS_SIZE:
        raise ValueError(f"{what} {text!r} is outside the {MIAS_SIZE}×{MIAS_SIZE} image")
    return int(number)


def _annotation(
    refnum: str,
    tissue: str,
    cls: str,
    severity: str | None,
    x: str | None,
    y: str | None,
    radius: str | None,
) -> MiasAnnotation:
    cls = cls.upper()
    if cls not in CLASS_NAMES:
        raise ValueError(f"unknown MIAS class {cls!r}")
    tissue = tissue.upper()
    if tissue not in TISSUE_NAMES:
        raise ValueError(f"unknown MIAS background tissue {tissue!r}")
    severity = (severity or "").strip().upper() or None
    if severity is not None and severity not in SEVERITY_NAMES:
        raise ValueError(f"unknown MIAS severity {severity!r}")
    circle = (("x", x), ("y", y), ("radius", radius))
    given = [name for name, text in circle if (text or "").strip()]
    if 0 < len(given) < 3:  # a cut-off row: its circle would silently vanish
        raise ValueError(f"a circle needs x, y and radius, the row gives only {', '.join(given)}")
    return MiasAnnotation(
        refnum.lower(),
        tissue,
        cls,
        severity,
        _optional_int(x, "x"),
        _optional_int(y, "y"),
        _positive(_optional_int(radius, "radius")),
    )


def _positive(radius: int | None) -> int | None:
    if radius is not None and radius <= 0:
        raise ValueError(f"radius {radius} must be positive")
    return radius


def _parse_line(fields: Sequence[str]) -> MiasAnnotation:
    padded = list(fields) + [""] * (7 - len(fields))
    return _annotation(*padded[:7])


def read_mias_info(path: str | Path) -> list[MiasAnnotation]:
    """Read a MIAS ``Info.txt`` (whitespace-separated) or a MIAS ``labels.csv``.

    Args:
        path: The annotation file. A header line starting with REFNUM is skipped; the CSV
            form needs the columns ``file, tissue, abnormality, severity, x, y, radius``.

    Returns:
        One annotation per row, in file order.

    Raises:
        ImageReadError: The file is missing, empty or has a malformed row (the message
            gives the line number so it can be fixed by hand).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as error:
        raise ImageReadError(f"cannot read MIAS annotations {path}: {error}") from error
    if path.suffix.lower() == ".csv":
        return _read_labels_csv(path, text)
    annotations: list[MiasAnnotation] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].upper() == "REFNUM":
            continue
        if not _REFNUM.match(fields[0]) or len(fields) < 3 or len(fields) > 7:
            raise ImageReadError(f"{path}:{number}: not a MIAS annotation row: {line!r}")
        try:
            annotations.append(_parse_line(fields))
        except ValueError as error:
            raise ImageReadError(f"{path}:{number}: {error}: {line!r}") from error
    if not annotations:
        raise ImageReadError(f"{path} holds no MIAS annotation rows")
    return annotations


def _read_labels_csv(path: Path, text: str) -> list[MiasAnnotation]:
    rows = list(csv.DictReader(text.splitlines()))
    needed = {"file", "tissue", "abnormality"}
    if not rows or not needed <= set(rows[0]):
        raise ImageReadError(f"{path} is not a MIAS labels.csv (needs columns {sorted(needed)})")
    annotations = []
    for number, row in enumerate(rows, start=2):
        refnum = mias_refnum(row["file"])
        if refnum is None:
            raise ImageReadError(f"{path}:{number}: {row['file']!r} is not a MIAS image name")
        try:
            annotations.append(
                _annotation(
                    refnum,
                    row["tissue"],
                    row["abnormality"],
                    row.get("severity"),
                    row.get("x"),
                    row.get("y"),
                    row.get("radius"),
                )
            )
        except ValueError as error:
            raise ImageReadError(f"{path}:{number}: {error}") from error
    return annotations


def mias_image_label(annotations: Iterable[MiasAnnotation]) -> str:
    """The 3-class image label: "malignant" if any finding is, else "benign" if any, else "normal".

    This is the HMC-Net convention (mdb144 mixes a benign and a malignant finding: malignant).
    """
    severities = {a.severity for a in annotations}
    if "M" in severities:
        return "malignant"
    if "B" in severities:
        return "benign"
    return "normal"


def find_mias_annotations(image_path: str | Path) -> list[MiasAnnotation] | None:
    """The annotations of a MIAS image from an ``Info.txt`` (or MIAS labels.csv) beside it.

    Returns:
        The image's rows, or None when the image is not a MIAS name or its folder holds
        no annotation file listing it.
    """
    image_path = Path(image_path)
    refnum = mias_refnum(image_path)
    if refnum is None:
        return None
    for name in ("Info.txt", "info.txt", "labels.csv"):
        candidate = image_path.parent / name
        if not candidate.is_file():
            continue
        try:
            rows = [a for a in read_mias_info(candidate) if a.refnum == refnum]
        except ImageReadError:
            continue  # a labels.csv of another dataset; try the next candidate
        if rows:
            return rows
    return None


def _most_severe(annotations: Sequence[MiasAnnotation]) -> str | None:
    severities = {a.severity for a in annotations}
    return "M" if "M" in severities else "B" if "B" in severities else None


def mias_metadata(annotations: Sequence[MiasAnnotation]) -> dict[str, object]:
    """JSON-able facts of one image's annotations for ``metadata["pathreview"]``."""
    first = annotations[0]
    return {
        "dataset": "MIAS",
        "refnum": first.refnum,
        "patient_id": str(first.patient),
        "tissue": first.tissue,
        "tissue_name": TISSUE_NAMES[first.tissue],
        "abnormality": first.abnormality,
        "severity": _most_severe(annotations),
        "classes": [a.abnormality for a in annotations],
        "severities": [a.severity for a in annotations],
        "label": mias_image_label(annotations),
        "abnormalities": [
            {
                "class": a.abnormality,
                "severity": a.severity,
                "x": a.x,
                "y": a.y,
                "radius": a.radius,
                "row": a.row,
                "col": a.col,
            }
            for a in annotations
        ],
    }
