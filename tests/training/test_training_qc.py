"""Training's QC (``data.qc``) judges the image prediction judges, not the training canvas."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from napari_pathreview.training import datasets as ds
from napari_pathreview.training.preparation import base_spec, qc_filter
from napari_pathreview.training.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "training"
#: blurry as stored (Laplacian variance 67 < 75), sharp once shrunk onto a 256-px canvas (170)
BLURRY = "SOB_B_A-14-22549CD-40-019.png"
SHARP = "SOB_B_A-14-22549AB-40-001.png"


@pytest.fixture
def seed001(shared_data: Path):
    """Seed 001's recipe (QC on: blur < 75, tissue < 40 %) over the shared BreaKHis images."""
    return load_recipe(RECIPES / "seed001_hybrid.yaml", [f"data.root={shared_data / 'breakhis'}"])


@pytest.fixture
def pair(shared_data: Path) -> list[ds.Sample]:
    folder = shared_data / "breakhis"
    return [ds.Sample(str(folder / name), "benign", name) for name in (BLURRY, SHARP)]


def _predictor(recipe):
    """A predictor of a model trained by ``recipe`` (its card carries the recipe's spec)."""
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.models import create_model
    from napari_pathreview.registry.card import ModelCard

    spec = base_spec(recipe)
    card = ModelCard(
        name="qc",
        architecture="resnet18",
        task="binary",
        classes=("benign", "malignant"),
        modality="histology",
        input_size=spec.input_size,
        preprocess=spec,
    )
    return Predictor(create_model("resnet18", 2), card, device="cpu", channels_last=False)


def test_an_image_predict_flags_blurry_is_dropped_by_training_qc_and_named(
    seed001, pair, caplog
) -> None:
    assert "blurry" in _predictor(seed001).quality(pair[0].path).reasons[0]
    prepared = ds.prepare_all(pair, base_spec(seed001))
    with caplog.at_level(logging.WARNING):
        samples, kept = qc_filter(seed001, pair, prepared)
    assert [s.path for s in samples] == [pair[1].path] and kept == [prepared[1]]
    assert f"QC drops {pair[0].path}: blurry (laplacian variance 66.8 < 75)" in caplog.text


def test_an_image_predict_passes_is_kept_by_training_qc(seed001, pair) -> None:
    assert _predictor(seed001).quality(pair[1].path).passed
    samples, _ = qc_filter(seed001, pair[1:], ds.prepare_all(pair[1:], base_spec(seed001)))
    assert [s.path for s in samples] == [pair[1].path]


def test_training_qc_scores_are_predict_s_on_breakhis_images(seed001, shared_data) -> None:
    spec, config = base_spec(seed001), ds.qc_config(seed001.data)
    predictor = _predictor(seed001)
    for sample in ds.from_breakhis(shared_data / "breakhis", "binary")[::4]:
        assert ds.sample_quality(sample, spec, config) == predictor.quality(sample.path)


@pytest.fixture
def small_crop(shared_data: Path, tmp_path: Path) -> ds.Sample:
    """A sharp 60×60 px piece of a real BreaKHis image (resolution unknown): QC passes its
    blur and tissue, but seed 001's 256-px canvas would enlarge it 4.3×."""
    import cv2

    bgr = cv2.imread(str(shared_data / "breakhis" / SHARP))
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), bgr[200:260, 300:360])
    return ds.Sample(str(path), "benign", "small")


def test_an_image_predict_calls_heavily_upsampled_is_dropped_by_training_qc(
    seed001, small_crop, caplog
) -> None:
    reasons = _predictor(seed001).quality(small_crop.path).reasons
    assert [r.split(" (")[0] for r in reasons] == ["heavily upsampled"]
    prepared = ds.prepare_all([small_crop], base_spec(seed001))
    with caplog.at_level(logging.WARNING), pytest.raises(ds.DatasetError, match="every image"):
        qc_filter(seed001, [small_crop], prepared)
    assert f"QC drops {small_crop.path}: heavily upsampled (60×60 px enlarged" in caplog.text


def test_preparing_with_qc_judges_each_image_from_its_one_decode(seed001, pair, tmp_path) -> None:
    import shutil

    copies = []
    for sample in pair:
        copy = tmp_path / Path(sample.path).name
        shutil.copy(sample.path, copy)
        copies.append(ds.Sample(str(copy), sample.label, sample.patient_id))
    spec, config = base_spec(seed001), ds.qc_config(seed001.data)
    prepared = ds.prepare_all(copies, spec, qc=config)
    assert [p.qc for p in prepared] == [ds.sample_quality(s, spec, config) for s in copies]
    for copy in copies:  # qc_filter has no file left to decode a second time
        Path(copy.path).unlink()
    samples, kept = qc_filter(seed001, copies, prepared)
    assert [s.path for s in samples] == [copies[1].path] and kept == [prepared[1]]


def test_a_model_trained_at_blur_40_passes_at_predict_the_images_it_trained_on(
    tiny_recipe, pair, tmp_path
) -> None:
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.training import run_recipe

    data = {**tiny_recipe()["data"], "qc": True, "qc_blur_threshold": 40}
    recipe = tiny_recipe(data=data, phases=[{"name": "all", "epochs": 1}], register={"name": "qc"})
    result = run_recipe(recipe, out_dir=tmp_path)
    predictor = Predictor.from_registry(result.registered, device="cpu")
    assert predictor.card.qc["blur_threshold"] == 40.0
    assert predictor.quality(pair[0].path).passed  # Laplacian variance 66.8: kept by training
