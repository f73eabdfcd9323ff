"""What the Review and Analyze dock tests share: notices seen, a queue folder of images, a
prediction as Analyze leaves it on a layer, and the user's steps (typing a name, waiting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PREDICTION = {
    "model_name": "m",
    "model_version": "1",
    "classes": ["benign", "malignant"],
    "probabilities": {"benign": 0.2, "malignant": 0.8},
    "label": "malignant",
    "threshold": 0.5,
    "settings": {"tta": "none"},
}


def messages() -> list[str]:
    """The napari notifications shown from now on (filled in as they come)."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def put_prediction(layer: Any, prediction: dict[str, Any] = PREDICTION) -> None:
    """What the Analyze widget leaves on a layer (assigned whole: fires the metadata event)."""
    meta = dict(layer.metadata["pathreview"])
    meta["prediction"] = dict(prediction)
    layer.metadata = {**layer.metadata, "pathreview": meta}


def enter_reviewer(review: Any, name: str) -> None:
    """Type a name in Reviewer and leave the field, as a user does."""
    review.reviewer.value = name
    review.reviewer.native.editingFinished.emit()


def queue_folder(
    tmp_path: Path, n: int, seed: int, shape: tuple[int, int] = (40, 48)
) -> list[Path]:
    """``queue/case_0.png`` … ``case_{n-1}.png``: distinct random RGB images (distinct hashes)."""
    folder = tmp_path / "queue"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"case_{i}.png"
        Image.fromarray(rng.integers(60, 200, (*shape, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def wait_loaded(qtbot: Any, review: Any, path: Path) -> None:
    """Wait until the queue shows ``path`` and navigation is enabled again."""
    qtbot.waitUntil(
        lambda: review.loaded_path == path and review.next_button.isEnabled(), timeout=20_000
    )


def answer_prompt(button: str) -> None:
    """Click ``button`` in the unsaved-changes dialog as soon as it opens."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    def click() -> None:
        box = QApplication.activeModalWidget()
        if box is None:
            QTimer.singleShot(20, click)
            return
        next(b for b in box.buttons() if b.text() == button).click()

    QTimer.singleShot(20, click)
