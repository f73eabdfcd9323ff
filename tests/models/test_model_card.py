"""ModelCard validation: every bad field is named in the error."""

from __future__ import annotations

import pytest

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.registry import ModelCard, ModelCardError

BASE = {
    "name": "demo",
    "architecture": "resnet18",
    "task": "binary",
    "classes": ["benign", "malignant"],
    "modality": "histology",
}


def test_card_round_trips_through_a_plain_dict() -> None:
    card = ModelCard.from_dict({**BASE, "threshold": 0.35, "input_size": [3, 224, 224]})
    again = ModelCard.from_dict(card.to_dict())
    assert again == card
    assert card.classes == ("benign", "malignant") and card.input_size == (3, 224, 224)


def test_card_is_frozen() -> None:
    card = ModelCard.from_dict(BASE)
    with pytest.raises(AttributeError):
        card.name = "other"  # type: ignore[misc]


def test_card_errors_are_invalid_input_errors() -> None:
    assert issubclass(ModelCardError, InvalidInputError)


@pytest.mark.parametrize("missing", ["name", "architecture", "task", "classes", "modality"])
def test_missing_required_field_is_named(missing: str) -> None:
    data = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ModelCardError, match=f"'{missing}'"):
        ModelCard.from_dict(data)


def test_complete_cards_need_the_registry_fields() -> None:
    with pytest.raises(ModelCardError, match="'version'"):
        ModelCard.from_dict(BASE, complete=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("classes", "benign"),
        ("classes", ["a", "a"]),
        ("modality", "xray"),
        ("stain_method", "fancy"),
        ("threshold", 1.5),
        ("threshold", "0.5"),
        ("input_size", [3, 224]),
        ("mean", [0.5, "x", 0.5]),
        ("std", [0.5, 0.0, 0.5]),
        ("metrics", [1, 2]),
        ("task", 3),
        ("weights_sha256", "abc"),
        ("created_at", "yesterday"),
        ("version", "v1"),
        ("cam_target_layers", "layer4"),
        ("tta", "sideways"),
    ],
)
def test_wrong_value_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ModelCardError, match=f"'{field}'|{field}"):
        ModelCard.from_dict({**BASE, field: value})


def test_unknown_fields_are_refused_as_likely_typos() -> None:
    with pytest.raises(ModelCardError, match="treshold"):
        ModelCard.from_dict({**BASE, "treshold": 0.5})


def test_numpy_metrics_become_plain_numbers() -> None:
    import numpy as np

    card = ModelCard.from_dict({**BASE, "metrics": {"auc": np.float32(0.75), "cm": np.eye(2)}})
    assert type(card.metrics["auc"]) is float and card.metrics["cm"] == [[1.0, 0.0], [0.0, 1.0]]


def test_ref_and_num_classes() -> None:
    card = ModelCard.from_dict({**BASE, "version": 3})
    assert card.ref == "demo@3" and card.num_classes == 2


MAMMOGRAM = {**BASE, "task": "lesion", "classes": ["normal", "lesion"], "modality": "mammogram"}
TWO_FILM = {
    "slope": 1.2,
    "intercept": 0.4,
    "fitted": True,
    "n_films": 32,
    "negative_class": "normal",
    "fitted_on": "fold 2's validation films",
}


def test_a_mammogram_card_carries_its_two_film_calibration() -> None:
    card = ModelCard.from_dict({**MAMMOGRAM, "bilateral": TWO_FILM})
    assert ModelCard.from_dict(card.to_dict()).bilateral == TWO_FILM


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"slope": float("nan")}, "bilateral.slope"),
        ({"intercept": "0.4"}, "bilateral.intercept"),
        ({"fitted": "yes"}, "bilateral.fitted"),
        ({"n_films": -1}, "bilateral.n_films"),
        ({"negative_class": "benign"}, "bilateral.negative_class"),
        ({"offset": 0.1}, "offset"),
    ],
)
def test_a_bad_two_film_calibration_is_refused_naming_the_key(change, named) -> None:
    with pytest.raises(ModelCardError, match=named):
        ModelCard.from_dict({**MAMMOGRAM, "bilateral": {**TWO_FILM, **change}})


def test_a_histology_card_has_no_left_and_right_film() -> None:
    with pytest.raises(ModelCardError, match="'bilateral'.*mammograms"):
        ModelCard.from_dict({**BASE, "bilateral": TWO_FILM})


def test_a_card_reads_with_the_views_its_run_was_scored_under() -> None:
    assert ModelCard.from_dict(BASE).tta == "none"
    flips = ModelCard.from_dict({**BASE, "tta": "flips"})
    assert ModelCard.from_dict(flips.to_dict()).tta == "flips"
    # a card written before the field: its run's eval.tta, as metrics.json recorded it
    assert ModelCard.from_dict({**BASE, "metrics": {"tta": "d4"}}).tta == "d4"


def test_reading_with_other_views_than_the_fitted_ones_is_explained() -> None:
    from napari_pathreview.registry.card import tta_mismatch

    binary = ModelCard.from_dict({**BASE, "threshold": 0.4, "tta": "flips", "version": 2})
    assert tta_mismatch(binary, "flips") is None
    reason = tta_mismatch(binary, "none")
    assert "demo@2's threshold was fitted under test-time augmentation 'flips'" in reason
    assert "read with 'none'" in reason
    two_film = ModelCard.from_dict({**MAMMOGRAM, "bilateral": TWO_FILM, "tta": "flips"})
    assert "two-film calibration was fitted" in tta_mismatch(two_film, "d4")
    # a card with neither a threshold nor a two-film calibration decides by argmax alone
    assert tta_mismatch(ModelCard.from_dict({**MAMMOGRAM, "tta": "flips"}), "none") is None


def test_a_card_records_every_qc_threshold_it_was_given_or_defaults() -> None:
    card = ModelCard.from_dict({**BASE, "qc": {"blur_threshold": 40}})
    assert card.qc["blur_threshold"] == 40.0 and card.qc["min_tissue_fraction"] == 0.4
    assert ModelCard.from_dict(card.to_dict()) == card


def test_a_histology_card_written_before_qc_takes_its_recipe_s_thresholds() -> None:
    recipe = {"data": {"qc": True, "qc_blur_threshold": 40, "qc_tissue_fraction": 0.3}}
    card = ModelCard.from_dict({**BASE, "recipe": recipe})
    assert (card.qc["blur_threshold"], card.qc["min_tissue_fraction"]) == (40, 0.3)


def test_a_histology_card_without_recorded_thresholds_takes_the_qc_defaults() -> None:
    from napari_pathreview.stain import QCConfig

    assert ModelCard.from_dict(BASE).qc == QCConfig().to_dict()


def test_a_mammogram_card_has_no_qc_thresholds() -> None:
    assert ModelCard.from_dict(MAMMOGRAM).qc is None


def test_a_mammogram_card_carrying_qc_thresholds_is_refused_naming_qc() -> None:
    """Mammograms get no QC, so thresholds on their card would be ignored without a word."""
    with pytest.raises(ModelCardError, match=r"card field 'qc' holds H&E .*'mammogram'"):
        ModelCard.from_dict({**MAMMOGRAM, "qc": {"blur_threshold": 40}})


def test_a_card_qc_threshold_out_of_range_is_named() -> None:
    with pytest.raises(ModelCardError, match=r"'qc.min_tissue_fraction' must be within \[0, 1\]"):
        ModelCard.from_dict({**BASE, "qc": {"min_tissue_fraction": 1.5}})


def test_an_unknown_card_qc_threshold_is_named() -> None:
    with pytest.raises(ModelCardError, match="card field 'qc' takes .*blur_treshold"):
        ModelCard.from_dict({**BASE, "qc": {"blur_treshold": 40}})
