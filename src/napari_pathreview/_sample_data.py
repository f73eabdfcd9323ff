"""napari sample-data contributions (File ▸ Open Sample ▸ PathReview).

The files live in the repository's ``sample_data/`` (see its ATTRIBUTION.md), reached from
the installed package through the relative symlink ``napari_pathreview/sample_data``.
They open through the same code as File ▸ Open, so layers and metadata are identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_pathreview.errors import ImageReadError

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"

SAMPLES: dict[str, str] = {
    "breakhis_benign": "breakhis/SOB_B_F-14-9133-40-001.png",
    "breakhis_malignant": "breakhis/SOB_M_DC-14-2523-40-010.png",
    "mias_mammogram": "mias/mdb028.pgm",
    "he_reference": "he_reference/HEnorm_python_example1.png",
    "pyramidal_tiff": "slides/he_pyramid.tif",
}
"""Sample key (napari.yaml) → file relative to ``sample_data/``."""


def sample_path(key: str) -> Path:
    """The file behind a sample key; ImageReadError if the install lacks sample_data/."""
    path = SAMPLE_DIR / SAMPLES[key]
    if not path.is_file():
        raise ImageReadError(
            f"sample file missing: {path}; reinstall napari-pathreview "
            "(the sample_data folder ships inside the package)"
        )
    return path


def _layers(key: str) -> list[tuple[Any, ...]]:
    from napari_pathreview.io.layers import layers_for_path

    return layers_for_path(sample_path(key))


def breakhis_benign() -> list[tuple[Any, ...]]:
    """BreaKHis fibroadenoma (benign), 40X, patient 14-9133."""
    return _layers("breakhis_benign")


def breakhis_malignant() -> list[tuple[Any, ...]]:
    """BreaKHis ductal carcinoma (malignant), 40X, patient 14-2523."""
    return _layers("breakhis_malignant")


def mias_mammogram() -> list[tuple[Any, ...]]:
    """MIAS mdb028 (fatty, malignant circumscribed mass) with its ROI ellipse."""
    return _layers("mias_mammogram")


def he_reference() -> list[tuple[Any, ...]]:
    """An H&E tile often used as a stain-normalisation target."""
    return _layers("he_reference")


def pyramidal_tiff() -> list[tuple[Any, ...]]:
    """A 3-level tiled pyramidal TIFF (1024/512/256 px) opened lazily as multiscale."""
    return _layers("pyramidal_tiff")
