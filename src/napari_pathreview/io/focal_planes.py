"""A whole slide scanned at several focal planes (a z-stack in a DICOM WSI): which plane is read.

A slide is one plane to everything downstream (tiling at the model's µm/px, ROIs, the tile
cache), so a z-stack is read at one stated plane, never silently: the middle one (of an even
count, the lower of the two middles), the plane a scanner's autofocus centres the stack on.
The viewer, the Analyze dock and ``predict-slides`` read the same plane, and each says which
(a notification and the layer's metadata; ``slides.csv`` columns and the result's meta).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FocalPlanes:
    """The focal planes of a slide (Z in µm, ascending) and the one it is read at.

    Attributes:
        planes_um: Every plane's Z, µm, lowest first.
        shown_um: The plane read (:func:`middle_plane`).
    """

    planes_um: tuple[float, ...]
    shown_um: float

    @property
    def index(self) -> int:
        """The plane read, counted from 0 (lowest Z first)."""
        return self.planes_um.index(self.shown_um)

    def note(self, path: Path) -> str:
        """What the user is told: the file, how many planes, which one is read."""
        count = len(self.planes_um)
        return (
            f"{path.name}: a z-stack of {count} focal planes (Z {self.planes_um[0]:g} to "
            f"{self.planes_um[-1]:g} µm); only plane {self.index + 1} of {count} (Z "
            f"{self.shown_um:g} µm, the middle one) is shown and analysed, as it is by "
            "predict-slides"
        )

    def facts(self, path: Path) -> dict[str, Any]:
        """The layer metadata and result record of the choice."""
        return {
            "focal_planes_um": list(self.planes_um),
            "focal_plane_um": self.shown_um,
            "focal_plane_index": self.index,
            "focal_plane_note": self.note(path),
        }

    def columns(self) -> dict[str, Any]:
        """``slides.csv`` columns: the plane analysed and how many the slide holds."""
        return {"focal_plane_um": self.shown_um, "focal_planes": len(self.planes_um)}


def middle_plane(planes_um: list[float]) -> FocalPlanes | None:
    """The planes with the middle one chosen; None for a slide of one plane."""
    planes = tuple(sorted(float(z) for z in planes_um))
    if len(planes) < 2:
        return None
    return FocalPlanes(planes, planes[(len(planes) - 1) // 2])


def nearest_plane(planes_um: list[float], z_um: float) -> float:
    """The plane of ``planes_um`` closest to ``z_um``: a reduced level scanned at fewer
    planes is read at the one nearest the plane chosen at full resolution."""
    return min(planes_um, key=lambda z: (abs(z - z_um), z))
