"""``review queue --order uncertainty`` puts first the images nearest the model's decision: a
binary card's threshold, not 0.5 (``ordering.decision_uncertainty``). The console script runs
here, on a real registered model."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PATHREVIEW = str(Path(sys.executable).with_name("pathreview"))
CARD = {"name": "tiny", "task": "binary", "classes": ["benign", "malignant"],
        "modality": "histology", "input_size": [3, 32, 32]}  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five RGB patches from dark to light, so the model gives each its own probability."""
    rng = np.random.default_rng(0)
    out = tmp_path / "patches"
    out.mkdir()
    for i, base in enumerate((30, 80, 130, 180, 230)):
        pixels = np.clip(rng.normal(base, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"patch{i}.png")
    return out


@pytest.fixture
def register():
    """Register one fixed set of weights under a card with the given threshold."""
    import torch

    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    model = create_model("test_resnet", 2).eval()
    return lambda threshold: (
        f"tiny@{ModelRegistry().register(model, {**CARD, 'threshold': threshold})}"
    )


def _queue(folder: Path, model: str, out: Path) -> list[dict]:
    argv = [PATHREVIEW, "review", "queue", str(folder), "--model", model, "--out", str(out)]
    done = subprocess.run([*argv, "--tta", "none"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_image_at_the_cards_threshold_comes_first(folder, register, tmp_path) -> None:
    """At threshold 0.5 the image whose P(malignant) lies furthest from 0.5 comes last. A card
    whose threshold is that very P calls the image a coin flip: it must come first, scored ln 2
    (it stayed last: the queue ranked by entropy around 0.5 whatever the card said)."""
    at_half = _queue(folder, register(0.5), tmp_path / "half.csv")
    p_malignant = [float(row["p_malignant"]) for row in at_half]
    assert len(set(p_malignant)) == len(p_malignant)
    surest = at_half[-1]
    queue = _queue(folder, register(float(surest["p_malignant"])), tmp_path / "card.csv")
    assert queue[0]["path"] == surest["path"]
    assert float(queue[0]["uncertainty"]) == pytest.approx(math.log(2), abs=1e-5)


def test_uncertainty_is_the_entropy_with_the_threshold_moved_to_one_half() -> None:
    from napari_pathreview.review.ordering import decision_uncertainty, entropy

    assert decision_uncertainty([0.8, 0.2], 0.2) == pytest.approx(math.log(2))
    assert decision_uncertainty([0.85, 0.15], 0.2) > decision_uncertainty([0.5, 0.5], 0.2)
    assert decision_uncertainty([0.3, 0.7], 0.5) == pytest.approx(entropy([0.3, 0.7]))
    assert decision_uncertainty([0.2, 0.3, 0.5], None) == pytest.approx(entropy([0.2, 0.3, 0.5]))


def test_an_image_the_model_cannot_read_is_queued_last_and_says_why(
    folder, register, tmp_path
) -> None:
    """A damaged file in the folder used to refuse the whole queue; now the rest are ordered and
    it comes last, unscored, with the reason in its ``problem`` cell."""
    broken = folder / "broken.png"
    broken.write_bytes((folder / "patch0.png").read_bytes()[:100])  # truncated
    queue = _queue(folder, register(0.5), tmp_path / "queue.csv")
    assert [Path(row["path"]).name for row in queue][-1] == "broken.png"
    assert all(row["uncertainty"] and not row["problem"] for row in queue[:-1])
    last = queue[-1]
    assert last["uncertainty"] == last["predicted_label"] == last["p_malignant"] == ""
    assert "broken.png" in last["problem"] and "cannot decode" in last["problem"]
