"""Issue 14 in the Review dock: the queue's active-learning order, built off the GUI thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.viewer


def _uncertainty_order(model: str, paths: list[Path]) -> list[Path]:
    """What ``review.ordering`` computes directly (the CLI's ``review queue`` scores)."""
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.review.ordering import order_images

    predictor = Predictor.from_registry(model, device="cpu")
    return [entry.path for entry in order_images(predictor, paths, "uncertainty", "flips")]


def _folder_against_name_order(tmp_path: Path, model: str) -> list[Path]:
    """Three small images named so that file-name order is the reverse of uncertainty order."""
    staging = tmp_path / "staging"
    staging.mkdir()
    rng = np.random.default_rng(3)
    for i, base in enumerate((40, 120, 220)):
        pixels = np.clip(base + rng.normal(0, 25 * (i + 1), (48, 56, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(staging / f"img_{i}.png")
    ranked = _uncertainty_order(model, sorted(staging.iterdir()))
    folder = tmp_path / "queue"
    folder.mkdir()
    for rank, path in enumerate(ranked):  # most uncertain gets the last name
        path.rename(folder / f"case_{len(ranked) - 1 - rank}.png")
    return sorted(folder.iterdir())


def test_uncertainty_order_in_the_dock_matches_review_ordering(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    paths = _folder_against_name_order(tmp_path, histology_model)
    expected = _uncertainty_order(histology_model, paths)
    assert expected != paths  # the order really moves images: name order would fail below
    review = open_widget(make_napari_viewer(), "Review")
    review.reviewer.value = "dr_o"
    review.queue_order.value = "uncertainty"
    review.queue_model.value = histology_model
    assert review.load_queue(paths[0].parent) is not None
    assert review.queue is None  # scoring runs in the worker, not in this (the GUI) thread
    assert "ordering the queue by uncertainty" in review.progress_label.text()
    qtbot.waitUntil(lambda: review.loaded_path is not None, timeout=60_000)
    assert review.queue.paths == expected
    assert review.loaded_path == expected[0]


def test_an_order_without_a_model_is_refused_and_the_buttons_come_back(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, tmp_path: Path
) -> None:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    folder = tmp_path / "queue"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(folder / "a.png")
    review = open_widget(make_napari_viewer(), "Review")
    review.queue_order.value = "uncertainty"
    review.load_queue(folder)
    qtbot.waitUntil(lambda: review.next_button.isEnabled(), timeout=20_000)
    assert review.queue is None
    assert any("needs a model" in m for m in seen)
    assert review.progress_label.text() == "no queue open"


def test_a_model_of_the_other_modality_is_refused_without_a_command_line_hint(
    qtbot: Any, make_napari_viewer: Any, open_widget: Any, histology_model: str, tmp_path: Path
) -> None:
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    films = tmp_path / "films"
    films.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):  # single-channel: mammograms by the readers' rule
        Image.fromarray(rng.integers(0, 255, (48, 40), dtype=np.uint8)).save(films / name)
    review = open_widget(make_napari_viewer(), "Review")
    review.queue_order.value = "uncertainty"
    review.queue_model.value = histology_model
    review.load_queue(films)
    qtbot.waitUntil(lambda: review.next_button.isEnabled(), timeout=60_000)
    assert review.queue is None
    (refusal,) = [m for m in seen if "trained on histology images" in m]
    assert "a.png" in refusal and "pick a mammogram model" in refusal
    assert "--allow-modality-mismatch" not in refusal  # a dock has no such flag
