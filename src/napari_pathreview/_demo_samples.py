"""The sample images ``pathreview demo`` analyses, with the ROI mask of the mammogram.

Kept apart from ``demo`` so the demo's window (``widgets._workspace``) and its headless run can
both read the samples without the demo module and the widget importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_pathreview._sample_data import SAMPLE_DIR, SAMPLES
from napari_pathreview.errors import PathReviewError

#: Demo modality → keys of ``_sample_data.SAMPLES`` (the files napari's Open Sample lists too).
SAMPLE_KEYS: dict[str, tuple[str, ...]] = {
    "histology": ("breakhis_malignant", "breakhis_benign"),
    "mammogram": ("mias_mammogram",),
}


class DemoError(PathReviewError):
    """The demo could not find its recipes or sample images, or training registered nothing."""


@dataclass(frozen=True)
class DemoSample:
    """One sample image the demo analyses, with its ROI mask when it has one."""

    path: Path
    modality: str
    roi: Any | None = None  # bool H×W mask at the image's resolution

    @property
    def name(self) -> str:
        return self.path.stem


def sample_data_dir() -> Path:
    """The committed sample images, reached through the package's ``sample_data`` link."""
    return SAMPLE_DIR


def demo_samples() -> list[DemoSample]:
    """The BreaKHis patches and the MIAS mammogram (with its radiologist's ROI circle)."""
    from napari_pathreview.explain import mask_from_mias
    from napari_pathreview.io import find_mias_annotations, load_image

    samples = []
    for modality, keys in SAMPLE_KEYS.items():
        for key in keys:
            path = SAMPLE_DIR / SAMPLES[key]
            if not path.is_file():
                raise DemoError(f"sample image {path} is missing; reinstall the package.")
            roi = None
            annotations = find_mias_annotations(path)
            if annotations:
                shape = load_image(path).data.shape[:2]
                roi = mask_from_mias(annotations, shape)
            samples.append(DemoSample(path=path, modality=modality, roi=roi))
    return samples
