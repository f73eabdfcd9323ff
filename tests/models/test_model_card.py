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
