"""BreaKHis file names are the labels: parse them exactly, refuse anything else."""

from __future__ import annotations

import pytest

from napari_pathreview.io import BreakhisInfo, parse_breakhis_name


def test_parses_benign_name_with_lettered_patient() -> None:
    info = parse_breakhis_name("SOB_B_A-14-22549AB-100-027.png")
    assert info == BreakhisInfo("benign", "A", 100, "14-22549AB", 27)
    assert info.subtype_name == "adenosis"
    assert info.patient_stem == "14-22549"


def test_parses_malignant_name_in_any_folder_and_suffix() -> None:
    info = parse_breakhis_name("/data/x/SOB_M_DC-14-2523-40-010.jpg")
    assert info is not None
    assert (info.binary_label, info.subtype, info.magnification, info.patient_id) == (
        "malignant",
        "DC",
        40,
        "14-2523",
    )


@pytest.mark.parametrize(
    "name",
    [
        "mdb001.pgm",
        "SOB_X_DC-14-2523-40-010.png",
        "SOB_M_DC-14-2523-50-010.png",
        "SOB_B_DC-14-2523-40-010.png",  # benign class with a malignant subtype
        "SOB_M_ZZ-14-2523-40-010.png",
        "random.png",
    ],
)
def test_returns_none_for_other_names(name: str) -> None:
    assert parse_breakhis_name(name) is None


def test_metadata_carries_label_subtype_magnification_patient() -> None:
    facts = parse_breakhis_name("SOB_M_PC-15-190EF-400-003.png").as_metadata()
    assert facts == {
        "dataset": "BreaKHis",
        "binary_label": "malignant",
        "label": "malignant",
        "subtype": "PC",
        "subtype_name": "papillary carcinoma",
        "magnification": 400,
        "patient_id": "15-190EF",
    }


def test_magnification_gives_the_documented_pixel_size() -> None:
    # Spanhol et al. 2016: 6.5 µm camera pixels / (objective × 3.3 relay lens)
    for magnification, objective in ((40, 4), (100, 10), (200, 20), (400, 40)):
        name = f"SOB_B_F-14-9133-{magnification}-001.png"
        expected = 6.5 / (objective * 3.3)
        assert parse_breakhis_name(name).um_per_px == pytest.approx(expected, rel=0.01)
