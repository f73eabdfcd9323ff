"""``review queue``'s predicted_label is the model's decision: a binary card's threshold on
P(positive), as ``predict`` and the Analyze dock label the same image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"patch{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.mark.parametrize(("threshold", "label"), [(0.0, "malignant"), (1.0, "benign")])
def test_queue_labels_follow_the_cards_threshold(images, threshold, label) -> None:
    """At threshold 0 every image is malignant, at 1 benign, whatever the argmax says."""
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry
    from napari_pathreview.review.ordering import order_images

    card = {"name": "thresholded", "task": "binary", "classes": ["benign", "malignant"],
            "modality": "histology", "input_size": [3, 32, 32], "threshold": threshold}  # fmt: skip
    version = ModelRegistry().register(create_model("test_resnet", 2), card)
    predictor = Predictor.from_registry(f"thresholded@{version}", device="cpu")
    entries = order_images(predictor, images, "uncertainty", "none")
    assert [entry.label for entry in entries] == [label] * len(images)
