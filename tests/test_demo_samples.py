"""The demo's sample images come from their own module, shared by the window and headless run."""

from __future__ import annotations

from napari_pathreview._demo_samples import SAMPLE_KEYS, demo_samples


def test_demo_samples_are_the_breakhis_patches_and_the_mias_mammogram_with_its_roi() -> None:
    samples = demo_samples()
    assert [s.modality for s in samples] == ["histology", "histology", "mammogram"]
    assert [s.path.is_file() for s in samples] == [True, True, True]
    histology, mammogram = samples[:2], samples[2]
    assert all(s.roi is None for s in histology)
    assert mammogram.path.name == "mdb028.pgm"
    assert mammogram.roi is not None and mammogram.roi.any() and not mammogram.roi.all()
    assert set(SAMPLE_KEYS) == {"histology", "mammogram"}
