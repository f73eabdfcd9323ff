"""Builders of small real inputs for the io tests: DICOM files, broken images, pyramids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    spacing: tuple[float, float] | None = (0.07, 0.08),
    laterality: str = "R",
    view: str = "CC",
    rescale: tuple[float, float] | None = None,
) -> Path:
    """Write a minimal but valid DICOM (digital mammography SOP class) with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = "TEST-001"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    if spacing is not None:
        ds.PixelSpacing = [str(spacing[0]), str(spacing[1])]
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.add_new(0x00283006, "US", [int(v) for v in voi_lut])  # LUTData as US values
        ds.VOILUTSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def dicom_factory(tmp_path: Path) -> Callable[..., Path]:
    """``dicom_factory(name, pixels, **options)`` writes a DICOM into tmp_path."""

    def make(name: str, pixels: np.ndarray | None, **options) -> Path:
        return write_dicom(tmp_path / name, pixels, **options)

    return make


@pytest.fixture
def ramp12() -> np.ndarray:
    """A 12-bit horizontal ramp 0..4080 (64×256), easy to check windowing on."""
    return np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (64, 1))


@pytest.fixture
def png_bytes() -> bytes:
    """A real RGB PNG (noise, so it does not compress to nothing) as bytes."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def bad_files(tmp_path: Path, png_bytes: bytes) -> dict[str, Path]:
    """Files the plugin claims by name but cannot read."""
    files = {
        "truncated_png": (tmp_path / "truncated.png", png_bytes[: len(png_bytes) // 2]),
        "empty_png": (tmp_path / "empty.png", b""),
        "garbage_pgm": (tmp_path / "garbage.pgm", b"\x00\x17not an image at all" * 50),
        "garbage_tif": (tmp_path / "garbage.tif", b"II*\x00" + b"\xff" * 100),
        "garbage_geojson": (tmp_path / "broken.geojson", b'{"type": "FeatureCollection", "feat'),
        "empty_dcm": (tmp_path / "empty.dcm", b""),
    }
    for path, content in files.values():
        path.write_bytes(content)
    dicom = write_dicom(tmp_path / "no_pixels.dcm", None)
    return {**{key: path for key, (path, _) in files.items()}, "dicom_without_pixels": dicom}


OPENSLIDE_FIXTURES = (
    "small.svs",
    "boxes.tiff",
    "boxes_0.dcm",
    "boxes_1.dcm",
    "unreadable.svs",
    "unopenable.tiff",
    "\N{NEUTRAL FACE}.svs",
)


@pytest.fixture(scope="session")
def openslide_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """openslide-python's own test slides, from its source distribution on PyPI.

    Nobody here wrote them: they are the outside reference for our readers. Fetched with
    pip (the sdist of the installed openslide-python version); the tests skip, saying why,
    when PyPI cannot be reached.
    """
    import subprocess
    import sys
    import tarfile

    import openslide

    folder = tmp_path_factory.mktemp("openslide_sdist")
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--quiet",
        f"openslide-python=={openslide.__version__}",
        "-d",
        str(folder),
    ]
    errors = []
    # pip prepares the sdist's metadata: with the venv's setuptools when it is recent
    # enough (fast), else in an isolated build environment fetched from PyPI
    for extra in (["--no-build-isolation"], []):
        try:
            result = subprocess.run(base + extra, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("PyPI unreachable: downloading the openslide-python sdist timed out")
        if result.returncode == 0:
            break
        errors.append(result.stderr.strip()[-300:])
    archives = sorted(folder.glob("openslide*python-*.tar.gz"))
    if not archives:
        pytest.skip(f"openslide-python sdist not downloadable from PyPI: {errors[-1:]}")
    with tarfile.open(archives[0]) as archive:
        members = [m for m in archive.getmembers() if "/tests/fixtures/" in m.name and m.isfile()]
        archive.extractall(folder, members=members, filter="data")
    fixtures = next(folder.glob("*/tests/fixtures"))
    missing = [name for name in OPENSLIDE_FIXTURES if not (fixtures / name).is_file()]
    assert not missing, f"openslide-python's sdist no longer ships {missing}"
    return fixtures
