"""Physical sizes a TIFF states: the pixel size, and a stack's step between frames.

Four writers state them four ways: Aperio in the description (``MPP = …``), OME in its XML
(``PhysicalSizeX``/``Z`` with their units), ImageJ in its description (``unit=…`` for the
resolution tags, ``spacing=…`` between slices), and plain TIFF in the resolution tags (inch
or centimetre). Everything here answers in µm; a unit it does not know answers None rather
than a guessed scale. :func:`stated_sizes` turns them into a layer's scale by one rule for a
single image and a stack alike.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from typing import Any

_MPP = re.compile(r"MPP\s*=\s*([0-9.]+)")
_RESOLUTION_UNIT_UM = {2: 25_400.0, 3: 10_000.0}  # TIFF ResolutionUnit inch, centimetre → µm
UNIT_UM = {
    "nm": 1e-3,
    "µm": 1.0,
    "μm": 1.0,  # Greek mu, as some writers spell it
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "in": 25_400.0,
    "inch": 25_400.0,
}
"""A length unit as OME and ImageJ write it → µm."""


def unit_um(unit: object) -> float | None:
    """µm per ``unit`` (ImageJ writes µ escaped as ``\\u00B5``), None for unknown units."""
    name = str(unit or "").strip().lower().replace("\\u00b5", "µ")
    return UNIT_UM.get(name)


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _ome_pixels(tif: Any) -> dict[str, str]:
    """The attributes of the first OME ``Pixels`` element ({} when not OME or unparsable)."""
    if not tif.is_ome or not tif.ome_metadata:
        return {}
    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except ElementTree.ParseError:
        return {}
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            return dict(element.attrib)
    return {}


def ome_size_um(tif: Any, axis: str) -> float | None:
    """OME ``PhysicalSize{axis}`` in µm (its unit attribute, µm when absent)."""
    pixels = _ome_pixels(tif)
    size = _positive(pixels.get(f"PhysicalSize{axis}"))
    factor = unit_um(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
    return size * factor if size and factor else None


def _imagej_unit_um(tif: Any) -> float | None:
    metadata = tif.imagej_metadata if tif.is_imagej else None
    return unit_um(metadata.get("unit")) if metadata else None


def _resolution_px_per_unit(page: Any) -> float | None:
    try:
        resolution = page.tags["XResolution"].value
    except KeyError:
        return None
    per_unit = resolution[0] / resolution[1] if isinstance(resolution, tuple) else resolution
    return _positive(per_unit)


def tiff_um_per_px(tif: Any) -> float | None:
    """Pixel size in µm: Aperio ``MPP = …``, OME ``PhysicalSizeX``, ImageJ's ``unit`` for the
    resolution tags, else the resolution tags themselves.

    Plain resolution tags count only with an inch or centimetre unit, as OpenSlide reads them.
    """
    page = tif.pages[0]
    match = _MPP.search(page.description or "")
    if match:
        return float(match.group(1))
    ome = ome_size_um(tif, "X")
    if ome:
        return ome
    per_unit = _resolution_px_per_unit(page)
    imagej = _imagej_unit_um(tif)
    if imagej and per_unit:
        return imagej / per_unit
    try:
        microns = _RESOLUTION_UNIT_UM.get(int(page.tags["ResolutionUnit"].value))
    except KeyError:
        return None
    return microns / per_unit if microns and per_unit else None


def tiff_frame_step_um(tif: Any) -> float | None:
    """A stack's distance between frames in µm: OME ``PhysicalSizeZ``, else ImageJ's
    ``spacing`` (in its ``unit``); None when the file does not say."""
    ome = ome_size_um(tif, "Z")
    if ome:
        return ome
    metadata = tif.imagej_metadata if tif.is_imagej else None
    spacing = _positive(metadata.get("spacing")) if metadata else None
    factor = _imagej_unit_um(tif)
    return spacing * factor if spacing and factor else None


def stated_sizes(
    histology: bool, pixel_um: float | None, frame_um: float | None = None
) -> tuple[tuple[float, float], dict[str, Any]]:
    """The (row, col) scale and the metadata of the sizes a TIFF states (µm in), one rule for
    a single image and a stack: colour in µm (``um_per_px``, as histology), grey in mm
    (``pixel_spacing_mm``, as a DICOM mammogram's), a stack's step between frames in mm
    (``frame_spacing_mm``). Nothing stated: pixels, (1, 1) and no facts."""
    scale: tuple[float, float] = (1.0, 1.0)
    facts: dict[str, Any] = {}
    if pixel_um:
        size = pixel_um if histology else pixel_um / 1000.0
        scale = (size, size)
        facts = {"um_per_px": size} if histology else {"pixel_spacing_mm": [size, size]}
    if frame_um:
        facts["frame_spacing_mm"] = frame_um / 1000.0
    return scale, facts
