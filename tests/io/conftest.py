"""Builders of small real inputs for the io tests: broken images, pyramids (DICOM files:
``dicom_factory`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


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
def bad_files(tmp_path: Path, png_bytes: bytes, dicom_factory: Callable) -> dict[str, Path]:
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
    dicom = dicom_factory("no_pixels.dcm", None)
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
