"""Builders of small real whole-slide files: Aperio-style SVS, OME-TIFF, DICOM WSI series.

Each writes what the vendor's format specifies (tiles, pyramid levels, pixel size,
associated images), so the readers under test and OpenSlide read the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile


def tissue_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, JPEG-friendly RGB image with some texture (not constant tiles)."""
    rows, cols = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 12, (height, width), dtype=np.int64)
    red = (rows // 3 + noise) % 256
    green = (cols // 2 + 40) % 256
    blue = ((rows + cols) // 5 + 90) % 256
    return np.stack([red, green, blue], -1).astype(np.uint8)


def halvings(image: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """Level 0 and its 2× area-averaged reductions."""
    import cv2

    levels = [image]
    for _ in range(n_levels - 1):
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return levels


def write_aperio_svs(
    path: Path,
    image: np.ndarray,
    *,
    mpp: float = 0.25,
    app_mag: int = 40,
    n_levels: int = 3,
    label: np.ndarray | None = None,
    macro: np.ndarray | None = None,
) -> Path:
    """An SVS laid out as Aperio does: tiled level 0, thumbnail, tiled levels, label, macro."""
    levels = halvings(image, n_levels)
    height, width = image.shape[:2]
    head = f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] (256x256)"
    desc = f"{head} JPEG/RGB Q=90|AppMag = {app_mag}|MPP = {mpp:.4f}|Filename = test"
    jpeg = {
        "compression": "jpeg",
        "compressionargs": {"level": 90},
        "photometric": "rgb",
        "metadata": None,
    }
    thumb = levels[-1][::2, ::2]
    with tifffile.TiffWriter(path) as tif:
        tif.write(levels[0], tile=(256, 256), description=desc, **jpeg)
        tif.write(
            thumb, description=f"{head} -> {thumb.shape[1]}x{thumb.shape[0]} JPEG/RGB Q=90", **jpeg
        )
        for level in levels[1:]:
            tif.write(
                level,
                tile=(256, 256),
                description=f"{head} -> {level.shape[1]}x{level.shape[0]} JPEG/RGB Q=90",
                subfiletype=0,
                **jpeg,
            )
        if label is not None:
            tif.write(
                label,
                description=f"Aperio Image Library v12.0.15\r\nlabel {label.shape[1]}x"
                f"{label.shape[0]}",
                subfiletype=1,
                compression="lzw",
                photometric="rgb",
                metadata=None,
            )
        if macro is not None:
            tif.write(
                macro,
                description=f"Aperio Image Library v12.0.15\r\nmacro {macro.shape[1]}x"
                f"{macro.shape[0]}",
                subfiletype=9,
                **jpeg,
            )
    return path


def write_ome_pyramid(
    path: Path, image: np.ndarray, *, mpp: float = 0.5, n_levels: int = 3
) -> Path:
    """An OME-TIFF pyramid (SubIFDs) with PhysicalSizeX/Y in µm."""
    levels = halvings(image, n_levels)
    metadata = {
        "axes": "YXS",
        "PhysicalSizeX": mpp,
        "PhysicalSizeY": mpp,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "µm",
    }
    options = {"tile": (128, 128), "compression": "zlib", "photometric": "rgb"}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(levels[0], subifds=n_levels - 1, metadata=metadata, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
    return path


WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
SYNTAXES = {
    "uncompressed": "1.2.840.10008.1.2.1",
    "jpeg": "1.2.840.10008.1.2.4.50",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
    "rle": "1.2.840.10008.1.2.5",
}


def _tiles(level: np.ndarray, tile: int) -> list[np.ndarray]:
    """Row-major tiles of a level, the last row/column padded with white."""
    h, w = level.shape[:2]
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    padded = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    padded[:h, :w] = level
    return [
        padded[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
        for r in range(rows)
        for c in range(cols)
    ]


def _encode(frames: list[np.ndarray], syntax: str) -> bytes:
    import imagecodecs
    from pydicom.encaps import encapsulate

    if syntax == "uncompressed":
        return b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    if syntax == "jpeg":
        encoded = [imagecodecs.jpeg8_encode(f, level=95) for f in frames]
    elif syntax == "jpeg2000":
        encoded = [imagecodecs.jpeg2k_encode(f, level=0, codecformat="j2k") for f in frames]
    else:  # rle: bytes are not decoded by the reader under test, it must refuse first
        encoded = [np.ascontiguousarray(f).tobytes() for f in frames]
    return encapsulate([bytes(e) for e in encoded])


def _base_dataset(uids: dict[str, str], level: np.ndarray, tile: int, mpp: float) -> object:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = WSI_SOP_CLASS
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.Modality, ds.PatientID, ds.PatientName = "SM", "TEST-WSI", "Test^Slide"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240101", "120000", "", "1"
    ds.SeriesNumber, ds.Manufacturer, ds.ContainerIdentifier = 1, "pathreview-tests", "SLIDE_1"
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = level.shape[:2]
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    ds.FocusMethod, ds.ExtendedDepthOfField, ds.VolumetricProperties = "AUTO", "NO", "VOLUME"
    ds.ImagedVolumeWidth = level.shape[1] * mpp / 1000
    ds.ImagedVolumeHeight = level.shape[0] * mpp / 1000
    ds.ImagedVolumeDepth = 0.0
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = origin.YOffsetInSlideCoordinateSystem = 0
    ds.TotalPixelMatrixOriginSequence = [origin]
    optical = Dataset()
    optical.OpticalPathIdentifier = "0"
    optical.ObjectiveLensPower = 20
    ds.OpticalPathSequence = [optical]
    measures = Dataset()
    measures.PixelSpacing = [mpp / 1000, mpp / 1000]
    measures.SliceThickness = 0
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    return ds


def _sparse_positions(ds: object, level: np.ndarray, tile: int, mpp: float) -> None:
    from pydicom.dataset import Dataset

    h, w = level.shape[:2]
    frames = []
    for r in range(math.ceil(h / tile)):
        for c in range(math.ceil(w / tile)):
            position = Dataset()
            position.ColumnPositionInTotalImagePixelMatrix = c * tile + 1
            position.RowPositionInTotalImagePixelMatrix = r * tile + 1
            position.XOffsetInSlideCoordinateSystem = c * tile * mpp / 1000
            position.YOffsetInSlideCoordinateSystem = r * tile * mpp / 1000
            position.ZOffsetInSlideCoordinateSystem = 0
            item = Dataset()
            item.PlanePositionSlideSequence = [position]
            frames.append(item)
    ds.DimensionOrganizationType = "TILED_SPARSE"
    ds.PerFrameFunctionalGroupsSequence = frames


def _focal_planes(ds: object, planes: int, plane_um: float) -> None:
    """State ``planes`` focal planes ``plane_um`` apart, the first at Z 0 (TILED_FULL: the
    frames hold each plane's tiles in turn, as the standard orders them)."""
    ds.TotalPixelMatrixFocalPlanes = planes
    ds.ImagedVolumeDepth = (planes - 1) * plane_um
    ds.TotalPixelMatrixOriginSequence[0].ZOffsetInSlideCoordinateSystem = 0
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices = (
        plane_um / 1000
    )


def write_dicom_wsi(
    folder: Path,
    image: np.ndarray,
    *,
    tile: int = 64,
    n_levels: int = 3,
    syntax: str = "uncompressed",
    sparse: bool = False,
    mpp: float = 0.5,
    plane_um: float = 2.0,
) -> list[Path]:
    """A DICOM WSI series, one instance per pyramid level, written with pydicom. A 4-D
    ``image`` (planes×H×W×3) is a z-stack: each level holds every focal plane, ``plane_um``
    apart (TILED_FULL only)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uids = {key: generate_uid() for key in ("study", "series", "frame")}
    stack = image if image.ndim == 4 else image[None]
    by_plane = [halvings(plane, n_levels) for plane in stack]
    paths = []
    for index, level in enumerate(by_plane[0]):
        spacing = mpp * 2**index
        ds = _base_dataset(uids, level, tile, spacing)
        if len(stack) > 1:
            _focal_planes(ds, len(stack), plane_um)
        ds.ImageType = [
            "ORIGINAL" if index == 0 else "DERIVED",
            "PRIMARY",
            "VOLUME",
            "NONE" if index == 0 else "RESAMPLED",
        ]
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        frames = [t for levels in by_plane for t in _tiles(levels[index], tile)]
        ds.NumberOfFrames = len(frames)
        ds.PhotometricInterpretation = "YBR_FULL_422" if syntax == "jpeg" else "RGB"
        if sparse:
            _sparse_positions(ds, level, tile, spacing)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = SYNTAXES[syntax]
        ds.file_meta = meta
        ds.PixelData = _encode(frames, syntax)
        if syntax != "uncompressed":
            ds["PixelData"].VR = "OB"
        path = folder / f"level_{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
