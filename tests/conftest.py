"""Fixtures shared by the whole suite: an isolated home folder and the real data beside the repo."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

# torch's triton must be loaded before napari creates an OpenGL context: loading it after
# (Mesa llvmpipe under Xvfb) crashes the process. Imported here, for every test file, the
# order pytest runs them in does not matter (tests/io/test_viewer.py before tests/inference/
# used to segfault). The widgets guard the same way at Run.
import timm  # noqa: F401, E402

# The PostgreSQL server fixtures, for the review store's tests and the Review dock's alike
from postgres_server import pg_server, pg_url  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO_ROOT / "sample_data"
SHARED_DATA = Path(os.environ.get("PATHREVIEW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own $PATHREVIEW_HOME, so no test sees another's registry or reviews.

    The folder is removed after the test: registered full architectures weigh up to 0.4 GB each.
    """
    home = tmp_path_factory.mktemp("pathreview_home")
    monkeypatch.setenv("PATHREVIEW_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public images beside the project; tests using them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder absent: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The small attributed images committed in sample_data/."""
    return SAMPLE_DATA


def _torch_threads() -> None:
    """Keep torch to the machine's two cores and deterministic where cheap."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


_torch_threads()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server, a stalled tunnel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


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
    patient_id: str = "TEST-001",
) -> Path:
    """Write a minimal but valid DICOM (digital mammography SOP class) with pydicom; 3-D
    ``pixels`` (frames first) make a multi-frame one."""
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
    ds.PatientID = patient_id
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    if spacing is not None:
        ds.PixelSpacing = [str(spacing[0]), str(spacing[1])]
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if pixels.ndim == 3:  # frames first: a multi-frame object (tomosynthesis)
            ds.NumberOfFrames = pixels.shape[0]
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


def write_colour_dicom(path: Path, frames: np.ndarray, bits_stored: int = 8) -> Path:
    """Write a colour multi-frame DICOM (frames×rows×cols×3, RGB interleaved; a VL
    photographic image, as a camera on a microscope makes) with pydicom: 8-bit samples, or
    16-bit ones of which ``bits_stored`` are used when it is over 8."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "XC", "TEST-RGB"
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape[:3]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    allocated = 8 if bits_stored <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = frames.astype(np.uint8 if allocated == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def colour_dicom_factory(tmp_path: Path) -> Callable[..., Path]:
    """``colour_dicom_factory(name, frames, bits_stored=8)`` writes a colour multi-frame DICOM
    into tmp_path."""
    return lambda name, frames, **options: write_colour_dicom(tmp_path / name, frames, **options)


@pytest.fixture
def dicom_factory(tmp_path: Path) -> Callable[..., Path]:
    """``dicom_factory(name, pixels, **options)`` writes a DICOM into tmp_path (``name`` may
    hold sub-folders)."""

    def make(name: str, pixels: np.ndarray | None, **options) -> Path:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        return write_dicom(tmp_path / name, pixels, **options)

    return make


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """timm's hub unreachable (HF_HUB_OFFLINE) with an empty cache, and no local weights folder,
    in this process and in the console scripts it starts. Returns the (empty) hub cache."""
    import huggingface_hub.constants as hf_constants

    home = tmp_path / "hf-home"
    cache = home / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("PATHREVIEW_PRETRAINED_DIR", raising=False)
    return cache


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """``read_only(path)`` makes a file or folder unwritable until the test ends: by its mode,
    or for root (who ignores modes) by the immutable attribute, which refuses writes as a
    read-only mount does."""
    import subprocess

    changed: list[tuple[Path, int]] = []

    def make(path: Path) -> None:
        changed.append((path, path.stat().st_mode))
        path.chmod(0o555 if path.is_dir() else 0o444)
        if os.access(path, os.W_OK):
            subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a file unwritable here (root without chattr)")

    yield make
    for path, mode in reversed(changed):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
        path.chmod(mode)
