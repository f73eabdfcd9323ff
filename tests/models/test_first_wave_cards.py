"""Cards registered by the first wave (no ``preprocess``) still load, with a derived spec.

The card files below are what the first wave's registry wrote (``yaml.safe_dump`` of its
``ModelCard.to_dict()``, fields in its declaration order), byte for byte in layout.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import torch
from safetensors.torch import save_model

from napari_pathreview.inference import Predictor
from napari_pathreview.models import create_model
from napari_pathreview.preprocessing import PreprocessSpec
from napari_pathreview.registry import ModelRegistry

HISTOLOGY_CARD = """\
name: demo-histology
architecture: resnet18
task: binary
classes:
- benign
- malignant
modality: histology
version: '1'
architecture_kwargs: {{}}
input_size:
- 3
- 32
- 32
mean:
- 0.485
- 0.456
- 0.406
std:
- 0.229
- 0.224
- 0.225
stain_method: reinhard
stain_target:
  method: reinhard
  means:
  - 180.8
  - 148.6
  - 116.5
  stds:
  - 35.4
  - 17.5
  - 11.1
threshold: 0.42
cam_target_layers:
- layer4
metrics:
  test:
    accuracy: 0.75
split_protocol: patient-level holdout
recipe:
  name: demo_histology
  data:
    source: csv
    image_size: 32
    resize: 36
    crop: none
data_fingerprint: {fingerprint}
weights_sha256: {sha}
created_at: '2026-11-30T12:00:00+00:00'
description: demo model — trained on 24 sample images, not for diagnosis
"""

MAMMOGRAM_CARD = """\
name: demo-mammogram
architecture: resnet18
task: mammogram
classes:
- normal
- benign
- malignant
modality: mammogram
version: '1'
architecture_kwargs: {{}}
input_size:
- 3
- 32
- 32
mean:
- 0.485
- 0.456
- 0.406
std:
- 0.229
- 0.224
- 0.225
stain_method: none
stain_target: null
threshold: null
cam_target_layers:
- layer4
metrics: {{}}
split_protocol: patient-level holdout
recipe:
  name: demo_mammogram
  data:
    source: csv
    task: mammogram
    crop: breast
    image_size: 32
    resize: null
data_fingerprint: {fingerprint}
weights_sha256: {sha}
created_at: '2026-11-30T12:00:00+00:00'
description: demo model — trained on 30 sample images, not for diagnosis
"""


def _write_first_wave(root, name: str, text: str, classes: int) -> None:
    folder = root / name / "1"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_model(create_model("resnet18", classes), str(folder / "weights.safetensors"))
    sha = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    (folder / "card.yaml").write_text(text.format(fingerprint="a" * 64, sha=sha), "utf-8")


def test_a_first_wave_histology_card_loads_with_the_spec_its_recipe_implied(tmp_path):
    _write_first_wave(tmp_path, "demo-histology", HISTOLOGY_CARD, 2)
    model = ModelRegistry(tmp_path).load("demo-histology")
    card = model.card
    assert card.preprocess == PreprocessSpec(
        input_size=(3, 32, 32),
        resize=36,
        crop="none",
        channels="rgb",
        pixel_size=None,  # never recorded, never guessed
        pixel_unit="um",
        stain_method="reinhard",
        stain_target={
            "method": "reinhard",
            "means": [180.8, 148.6, 116.5],
            "stds": [35.4, 17.5, 11.1],
        },
    )
    rgb = np.full((50, 70, 3), (180, 110, 160), np.uint8)
    (prediction,) = Predictor(model, card, device="cpu").predict([rgb])
    assert prediction.stain == "reinhard" and set(prediction.probabilities) == set(card.classes)


def test_a_first_wave_mammogram_card_is_fed_as_its_training_evaluation_was(tmp_path):
    _write_first_wave(tmp_path, "demo-mammogram", MAMMOGRAM_CARD, 3)
    predictor = Predictor.from_registry("demo-mammogram", ModelRegistry(tmp_path), device="cpu")
    spec = predictor.spec
    assert (spec.crop, spec.resize, spec.channels) == ("breast", 37, "grey_to_rgb")
    assert (spec.pixel_size, spec.pixel_unit) == (None, "mm")

    grey = np.zeros((120, 100), np.uint8)
    grey[20:110, 5:60] = np.random.default_rng(0).integers(50, 250, (90, 55), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    # first wave: the breast box stretched to the 37 px square (8/7 of 32), centre 32 px
    square = cv2.resize(rgb[20:110, 5:60], (37, 37), interpolation=cv2.INTER_AREA)
    window = square[2:34, 2:34].astype(np.float32) / np.float32(255.0)
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    expected = torch.from_numpy(((window - mean) / std).transpose(2, 0, 1))
    torch.testing.assert_close(predictor.prepare([rgb])[0], expected, atol=1e-6, rtol=0)


def test_re_registering_a_first_wave_model_writes_the_derived_spec(tmp_path):
    _write_first_wave(tmp_path / "old", "demo-histology", HISTOLOGY_CARD, 2)
    model = ModelRegistry(tmp_path / "old").load("demo-histology")
    registry = ModelRegistry(tmp_path / "new")
    registry.register(model, model.card)
    text = (tmp_path / "new" / "demo-histology" / "1" / "card.yaml").read_text()
    assert "preprocess:" in text and "resize: 36" in text
    assert registry.card("demo-histology").preprocess == model.card.preprocess
