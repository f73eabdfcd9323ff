"""DICOM mammograms: VOI LUT / window applied, MONOCHROME1 inverted, spacing as scale."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathreview.errors import ImageReadError
from napari_pathreview.io import load_image


def test_plain_monochrome2_keeps_values_and_spacing(dicom_factory, ramp12) -> None:
    loaded = load_image(dicom_factory("plain.dcm", ramp12))
    assert loaded.modality == "mammogram"
    assert loaded.data.dtype == np.uint16 and np.array_equal(loaded.data, ramp12)
    assert loaded.scale == pytest.approx((0.07, 0.08))
    facts = loaded.metadata
    assert (facts["laterality"], facts["view"], facts["patient_id"]) == ("R", "CC", "TEST-001")
    assert facts["pixel_spacing_mm"] == pytest.approx([0.07, 0.08])


def test_window_is_applied(dicom_factory, ramp12) -> None:
    loaded = load_image(dicom_factory("window.dcm", ramp12, window=(1000, 500)))
    row = loaded.data[0].astype(int)
    below, above = ramp12[0] < 740, ramp12[0] > 1260
    assert np.all(row[below] == row.min()) and np.all(row[above] == row.max())
    assert row.max() > row.min()
    assert loaded.metadata["window_center"] == 1000.0 and loaded.metadata["voi_applied"]


def test_voi_lut_sequence_is_applied(dicom_factory) -> None:
    pixels = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    lut = np.array([4000, 3000, 1000, 0], dtype=np.uint16)  # an inverting LUT
    loaded = load_image(dicom_factory("lut.dcm", pixels, voi_lut=lut, bits_stored=12))
    assert loaded.data[0].tolist() == [4000, 3000, 1000, 0]


def test_monochrome1_is_inverted(dicom_factory, ramp12) -> None:
    loaded = load_image(dicom_factory("mono1.dcm", ramp12, photometric="MONOCHROME1"))
    assert np.array_equal(loaded.data, 4095 - ramp12)
    assert loaded.metadata["inverted_monochrome1"] is True


def test_rescale_slope_intercept_then_unsigned(dicom_factory, ramp12) -> None:
    loaded = load_image(dicom_factory("rescale.dcm", ramp12, rescale=(1.0, -1000.0)))
    assert loaded.data.min() == 0 and int(loaded.data.max()) == int(ramp12.max())


def test_missing_spacing_gives_unit_scale(dicom_factory, ramp12) -> None:
    loaded = load_image(dicom_factory("nospacing.dcm", ramp12, spacing=None))
    assert loaded.scale == (1.0, 1.0) and "pixel_spacing_mm" not in loaded.metadata


def test_a_detector_spacing_is_divided_by_the_views_magnification(dicom_factory, ramp12) -> None:
    import pydicom

    path = dicom_factory("mag.dcm", ramp12, spacing=None)
    ds = pydicom.dcmread(path)
    ds.ImagerPixelSpacing = [0.1, 0.1]  # at the detector: the breast is magnified 2× onto it
    ds.EstimatedRadiographicMagnificationFactor = 2.0
    ds.save_as(path)
    loaded = load_image(path)
    assert loaded.scale == pytest.approx((0.05, 0.05))
    assert loaded.metadata["pixel_spacing_mm"] == pytest.approx([0.05, 0.05])


def test_dicom_without_pixel_data_is_rejected(dicom_factory) -> None:
    with pytest.raises(ImageReadError, match="without pixel data"):
        load_image(dicom_factory("report.dcm", None))


def test_dicom_is_recognised_without_its_suffix(dicom_factory, ramp12, tmp_path) -> None:
    path = dicom_factory("scan.dcm", ramp12)
    renamed = path.rename(tmp_path / "scan.img")
    from napari_pathreview.io.images import _has_dicom_preamble

    assert _has_dicom_preamble(renamed)
