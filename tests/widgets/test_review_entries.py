"""The Review form keeps what the pathologist typed and shows only current, own reviews:
entries survive a prediction arriving, the form follows the reviewer's name, the disagreement
list holds each reviewer's latest review, and a queue image that cannot be read is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.viewer

BREAKHIS = "breakhis/SOB_M_DC-14-2523-40-010.png"
PREDICTION = {
    "model_name": "m",
    "model_version": "1",
    "classes": ["benign", "malignant"],
    "probabilities": {"benign": 0.2, "malignant": 0.8},
    "label": "malignant",
    "threshold": 0.5,
    "settings": {"tta": "none"},
}


def _messages() -> list[str]:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def _predict(layer: Any, prediction: dict[str, Any] = PREDICTION) -> None:
    """What the Analyze widget leaves on a layer (assigned whole: fires the metadata event)."""
    meta = dict(layer.metadata["pathreview"])
    meta["prediction"] = dict(prediction)
    layer.metadata = {**layer.metadata, "pathreview": meta}


def _folder(tmp_path: Path, n: int) -> list[Path]:
    folder = tmp_path / "queue"
    folder.mkdir()
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        path = folder / f"case_{i}.png"
        Image.fromarray(rng.integers(60, 200, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _wait_loaded(qtbot: Any, review: Any, path: Path) -> None:
    qtbot.waitUntil(
        lambda: review.loaded_path == path and review.next_button.isEnabled(), timeout=20_000
    )


def test_notes_typed_before_the_prediction_arrives_are_kept(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.notes.value = "typed while the model runs"
    review.confidence.value = 0.95
    _predict(layers[0])  # Analyze finishes
    assert review.notes.value == "typed while the model runs"
    assert review.confidence.value == pytest.approx(0.95)
    assert review.label.value == "malignant" and review.agreement.value == "agree"
    assert review.has_unsaved_changes()


def test_a_label_picked_before_the_prediction_arrives_is_kept(
    open_sample: Any, open_widget: Any
) -> None:
    viewer, layers = open_sample(BREAKHIS)
    review = open_widget(viewer, "Review")
    review.label.value = "benign"
    _predict(layers[0])
    assert review.label.value == "benign" and review.agreement.value == "disagree"
