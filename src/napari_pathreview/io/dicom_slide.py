"""The wsidicom backend of ``SlideSource``: DICOM whole-slide images (VL WSI, Supplement 145).

A DICOM WSI is a series of instances, one or more per pyramid level, each holding tiled
frames (TILED_FULL or TILED_SPARSE). Opening any one ``.dcm`` finds its siblings in the
same folder by SeriesInstanceUID and wsidicom is given that series' files only, so each
series of a folder opens as a slide of its own (:func:`dicom_folder` sorts a folder's files
into series); a folder opens its one WSI series. Headers are checked
before wsidicom assembles the pyramid, so an unsupported encoding or a missing level is
reported with the file's name instead of surfacing later as a broken tile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io.colour_depth import dicom_bits, region_to_rgb
from napari_pathreview.io.focal_planes import middle_plane, nearest_plane
from napari_pathreview.io.slide_source import SlideSource

logger = logging.getLogger(__name__)

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
"""VL Whole Slide Microscopy Image Storage."""

SUPPORTED_TRANSFER_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2": "implicit VR little endian (uncompressed)",
    "1.2.840.10008.1.2.1": "explicit VR little endian (uncompressed)",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}
"""Transfer syntaxes read (JPEG, JPEG 2000 and uncompressed families)."""

_HEADER_TAGS = [
    "SOPClassUID",
    "SeriesInstanceUID",
    "ImageType",
    "TotalPixelMatrixRows",
    "TotalPixelMatrixColumns",
    "OpticalPathSequence",
    "Modality",
    "Rows",
    "StudyInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "ImageLaterality",
    "Laterality",
    "ViewPosition",
    "BitsAllocated",
    "BitsStored",
]


def _header(path: Path) -> Any | None:
    """The header of a DICOM file (no pixel data), or None for anything else."""
    import pydicom

    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) != b"DICM":
                return None
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except Exception:  # unreadable sibling files are not part of any series
        logger.debug("%s: not a readable DICOM header", path, exc_info=True)
        return None


def is_dicom_wsi(path: Path) -> bool:
    """True for a DICOM file whose SOP class is VL Whole Slide Microscopy."""
    header = _header(path)
    return header is not None and str(getattr(header, "SOPClassUID", "")) == WSI_SOP_CLASS


def is_dicom_wsi_folder(path: str | Path, probe: int = 8) -> bool:
    """True for a folder holding DICOM WSI instances (checks the headers of a few files)."""
    path = Path(str(path))
    if not path.is_dir():
        return False
    candidates = [p for p in sorted(path.iterdir()) if p.is_file()][: probe * 4]
    dicoms = [p for p in candidates if p.suffix.lower() in (".dcm", ".dicom") or not p.suffix]
    return any(is_dicom_wsi(p) for p in dicoms[:probe])


@dataclass(frozen=True)
class DicomFolder:
    """The DICOM files directly inside a folder.

    Attributes:
        series: WSI instances (file → header) by SeriesInstanceUID, files sorted.
        refused: (file, why) for what looks like a slide but is none: a DICOM image of another
            kind (a mammogram) and a ``.dcm``/``.dicom`` file that is no readable DICOM.
            DICOM objects without pixels (DICOMDIR, reports) are neither.
        images: The DICOM images of another kind (file → header), also among ``refused``:
            what the napari reader opens one layer each.
    """

    series: dict[str, dict[Path, Any]]
    refused: list[tuple[Path, str]]
    images: dict[Path, Any] = field(default_factory=dict)


def dicom_folder(folder: Path) -> DicomFolder:
    """Sort the files directly inside ``folder`` into WSI series and refused DICOM files."""
    from pydicom.uid import UID

    series: dict[str, dict[Path, Any]] = {}
    refused: list[tuple[Path, str]] = []
    images: dict[Path, Any] = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        header = _header(file)
        if header is None:
            if file.suffix.lower() in (".dcm", ".dicom"):
                refused.append((file, "not a readable DICOM file"))
            continue
        sop = str(getattr(header, "SOPClassUID", ""))
        if sop == WSI_SOP_CLASS:
            uid = str(getattr(header, "SeriesInstanceUID", ""))
            series.setdefault(uid, {})[file] = header
        elif "Rows" in header:
            kind = UID(sop).name if sop else "image without a SOP class"
            modality = str(getattr(header, "Modality", "")) or "?"
            refused.append(
                (file, f"a DICOM {kind} (modality {modality}), not a whole-slide image (VL WSI)")
            )
            images[file] = header
    return DicomFolder(series, refused, images)


def volume_file(headers: dict[Path, Any]) -> Path | None:
    """The largest VOLUME (pyramid) instance of a series, None when it has none (a series
    of LABEL or OVERVIEW images only)."""
    volumes = [file for file, h in headers.items() if "VOLUME" in _image_type(h)]
    return max(volumes, key=lambda file: _pixels(headers[file]), default=None)


def _image_type(header: Any) -> list[str]:
    return [str(v).upper() for v in header.get("ImageType", [])]


def _pixels(header: Any) -> int:
    rows = int(header.get("TotalPixelMatrixRows", 0) or 0)
    return rows * int(header.get("TotalPixelMatrixColumns", 0) or 0)


def slide_series(series: dict[str, dict[Path, Any]]) -> dict[str, dict[Path, Any]]:
    """The series that are slides (they hold a pyramid), each with its scanner's label and
    overview series: a series without a VOLUME instance belongs to the one slide of its study
    (some scanners write them apart). Left out: label/overview series with no such slide."""

    def study(headers: dict[Path, Any]) -> str:
        return str(getattr(next(iter(headers.values())), "StudyInstanceUID", ""))

    pyramids = {uid: h for uid, h in series.items() if volume_file(h) is not None}
    by_study: dict[str, list[str]] = {}
    for uid, headers in pyramids.items():
        by_study.setdefault(study(headers), []).append(uid)
    slides = {uid: dict(headers) for uid, headers in pyramids.items()}
    for uid, headers in series.items():
        owners = by_study.get(study(headers), [])
        if uid not in pyramids and len(owners) == 1:
            slides[owners[0]].update(headers)
    return slides


def left_out_series(
    series: dict[str, dict[Path, Any]], slides: dict[str, dict[Path, Any]]
) -> dict[str, Path]:
    """UID → first file of each series that :func:`slide_series` gave as ``slides`` left
    out (labels or overviews only, no slide of their study beside them): what callers refuse."""
    owned = {file for headers in slides.values() for file in headers}
    return {
        uid: next(iter(headers))
        for uid, headers in series.items()
        if not owned.intersection(headers)
    }


def series_files(path: Path) -> dict[Path, Any]:
    """Instances (file → header) of the WSI slide ``path`` belongs to, or a folder holds: its
    pyramid series with its label/overview series (:func:`slide_series`).

    Raises:
        ImageReadError: No WSI instance, or a folder holding several WSI slides.
    """
    everything = dicom_folder(path if path.is_dir() else path.parent).series
    found = slide_series(everything) or everything  # labels only: refused when opened
    if path.is_dir():
        if len(found) != 1:
            what = "no DICOM whole-slide instance" if not found else f"{len(found)} series"
            raise ImageReadError(
                f"{path}: expected one DICOM WSI series, found {what}; name one instance file "
                "of a series to open that series"
            )
        return next(iter(found.values()))
    for headers in found.values():
        if path in headers:
            return headers
    raise ImageReadError(f"{path}: not a DICOM whole-slide (VL WSI) instance")


def _check_transfer_syntaxes(files: Iterable[Path]) -> None:
    import pydicom

    for file in files:
        meta = pydicom.filereader.read_file_meta_info(file)
        syntax = str(meta.TransferSyntaxUID)
        if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
            name = getattr(meta.TransferSyntaxUID, "name", syntax)
            raise ImageReadError(
                f"{file}: unsupported DICOM transfer syntax {name} ({syntax}); readable are "
                "JPEG, JPEG 2000 and uncompressed. Re-encode the slide with one of those"
            )


def _um(size_mm: Any) -> float | None:
    try:
        width, height = float(size_mm.width), float(size_mm.height)
    except Exception:  # wsidicom raises WsiDicomNoResolutionError without PixelSpacing
        return None
    return (width + height) / 2 * 1000.0 if width > 0 and height > 0 else None


def _base_header(path: Path, headers: dict[Path, Any]) -> Any:
    """The largest VOLUME instance; refused when it is a resampled (derived) level.

    Level 0 of a DICOM WSI pyramid has ImageType value 4 NONE; when the largest volume
    present is RESAMPLED the full-resolution instance is missing from the folder.
    """
    file = volume_file(headers)
    if file is None:
        raise ImageReadError(f"{path}: the DICOM WSI series has no VOLUME (pyramid) instance")
    base = headers[file]
    if "RESAMPLED" in _image_type(base):
        raise ImageReadError(
            f"{path}: the full-resolution level of this DICOM WSI series is missing (the "
            f"largest instance present is resampled, {base.get('TotalPixelMatrixColumns')}×"
            f"{base.get('TotalPixelMatrixRows')} px); add the missing instance files"
        )
    return base


def _objective_power(header: Any) -> float | None:
    try:
        return float(header.OpticalPathSequence[0].ObjectiveLensPower)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


class DicomSlide(SlideSource):
    """A DICOM WSI series read through wsidicom (tiles decoded on demand).

    A z-stack (several focal planes) is read at its middle plane (:mod:`.focal_planes`),
    every level at the plane nearest to it, and says so (``focal_planes``, a warning).
    """

    backend = "wsidicom"

    def __init__(self, path: str | Path) -> None:
        from wsidicom import WsiDicom

        path = Path(path)
        headers = series_files(path)
        files = list(headers)
        _check_transfer_syntaxes(files)
        base = _base_header(path, headers)
        try:
            wsi = WsiDicom.open(files)
        except Exception as error:  # wsidicom raises its own and pydicom's errors
            raise ImageReadError(
                f"{path}: wsidicom cannot assemble the DICOM WSI series "
                f"({type(error).__name__}: {error})"
            ) from error
        self._wsi = wsi
        self._files = files
        self._bits = dicom_bits(base)  # one depth for every tile (:mod:`.colour_depth`)
        try:
            levels = list(wsi.levels)
            if not levels:
                raise ImageReadError(f"{path}: the DICOM WSI series has no pyramid level")
            self._level_index = [level.level for level in levels]
            self.focal_planes = middle_plane(list(levels[0].focal_planes))
            chosen = self.focal_planes.shown_um if self.focal_planes else None
            self._level_z = [
                None if chosen is None else nearest_plane(list(level.focal_planes), chosen)
                for level in levels
            ]
            self._level_files = [_file_of(headers, level.size) for level in levels]
            super().__init__(
                path,
                [(level.size.height, level.size.width) for level in levels],
                um_per_px=_um(levels[0].pixel_spacing) if _has_spacing(levels[0]) else None,
                objective_power=_objective_power(base),
                level_tiles=[(level.tile_size.height, level.tile_size.width) for level in levels],
                properties={"dicom.files": str(len(files))},
            )
        except ImageReadError:
            wsi.close()
            raise
        if self.focal_planes:
            logger.warning("%s", self.focal_planes.note(path))

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        try:
            region = self._wsi.read_region(
                (x, y), self._level_index[level], (w, h), z=self._level_z[level], as_array=True
            )
        except Exception as error:  # pydicom/wsidicom/codecs raise many kinds on bad frames
            raise ImageReadError(
                f"{self._level_files[level] or self.path}: cannot decode level {level} at "
                f"(y={y}, x={x}): {type(error).__name__}: {error}"
            ) from error
        return region_to_rgb(np.asarray(region), self._bits)

    def _associated_names(self) -> list[str]:
        names = []
        if self._wsi.labels:
            names.append("label")
        if self._wsi.overviews:
            names.append("macro")
        if getattr(self._wsi.pyramid, "thumbnails", None):
            names.append("thumbnail")
        return names

    def _read_associated(self, name: str) -> np.ndarray:
        if name == "label":
            image = self._wsi.read_label(as_array=True)
        elif name == "macro":
            image = self._wsi.read_overview(as_array=True)
        else:
            size = self._wsi.pyramid.thumbnails[0].size
            image = self._wsi.read_thumbnail((size.width, size.height), as_array=True)
        return region_to_rgb(np.asarray(image), self._bits)  # wsidicom gives 8-bit images

    def _fingerprint_files(self) -> list[Path]:
        return list(self._files)

    def _close(self) -> None:
        self._wsi.close()


def _file_of(headers: dict[Path, Any], size: Any) -> Path | None:
    """The instance file holding a level of this size (for messages), if one matches."""
    for file, header in headers.items():
        rows = int(header.get("TotalPixelMatrixRows", 0) or 0)
        columns = int(header.get("TotalPixelMatrixColumns", 0) or 0)
        if (rows, columns) == (size.height, size.width):
            return file
    return None


def _has_spacing(level: Any) -> bool:
    try:
        level.pixel_spacing  # noqa: B018 - wsidicom raises when PixelSpacing is absent
    except Exception:
        return False
    return True
