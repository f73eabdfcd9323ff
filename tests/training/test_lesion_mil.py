"""MIL pooling heads, the patch MIL model, training on cached bags, and the zarr embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.models import create_model
from napari_pathreview.models.mil import MILHead, grid_to_image, unfold_patches
from napari_pathreview.training.embeddings import (
    EmbeddingError,
    PatchEncoder,
    encode_to_zarr,
    load_encoder,
    read_cache,
)
from napari_pathreview.training.mil import predict_bags, train_mil_head


def _head(pooling: str, **kw) -> MILHead:
    torch.manual_seed(0)
    return MILHead(8, 3, pooling, **kw).eval()


def test_max_pooling_is_the_highest_instance_logit_per_class():
    head = _head("max")
    h = torch.randn(2, 10, 8)
    out = head(h)
    assert torch.allclose(out.logits, out.instance_logits.max(1).values)


def test_topk_pooling_is_the_mean_of_the_top_share():
    head = _head("topk", topk=0.3)
    h = torch.randn(1, 10, 8)
    out = head(h)
    expected = out.instance_logits.topk(3, dim=1).values.mean(1)
    assert torch.allclose(out.logits, expected)
    assert torch.isclose(out.attention.sum(), torch.tensor(1.0))


def _logit_head(pooling: str, **kw) -> MILHead:
    """A head whose instance logits are the embeddings themselves (normal, benign, malignant)."""
    head = MILHead(3, 3, pooling, **kw).eval()
    with torch.no_grad():
        head.classifier.weight.copy_(torch.eye(3))
        head.classifier.bias.zero_()
    return head


def _mammogram_bag(lesion: list[float] | None) -> torch.Tensor:
    """50 patches of confidently normal tissue, plus one lesion patch when given."""
    patches = [[5.0, 0.0, 0.0]] * 50 + ([lesion] if lesion else [])
    return torch.tensor([patches])


@pytest.mark.parametrize("pooling", ["max", "topk"])
def test_with_a_negative_class_the_most_lesion_like_patch_decides_the_bag(pooling):
    per_class = _logit_head(pooling, topk=0.01)
    lesion_ranked = _logit_head(pooling, topk=0.01, negative_class=0)
    bag = _mammogram_bag([0.0, 4.0, 0.0])
    # per class, the top normal logit (5) of the normal tissue outvotes the benign lesion (4)
    assert int(per_class(bag).logits.argmax()) == 0
    out = lesion_ranked(bag)
    assert int(out.logits.argmax()) == 1
    assert int(out.attention[0].argmax()) == 50  # the pooled patch is the lesion
    assert int(lesion_ranked(_mammogram_bag(None)).logits.argmax()) == 0


def test_lesion_ranked_pooling_averages_the_top_share_of_whole_logit_vectors():
    head = _logit_head("topk", topk=0.1, negative_class=0)
    h = torch.randn(1, 20, 3)
    out = head(h)
    score = torch.logsumexp(h[0, :, 1:], -1) - h[0, :, 0]
    top = score.topk(2).indices
    assert torch.allclose(out.logits[0], h[0, top].mean(0))
    assert torch.allclose(out.attention[0, top], torch.full((2,), 0.5))


def test_negative_class_must_be_a_class_index():
    with pytest.raises(InvalidInputError, match="negative_class 3"):
        MILHead(8, 3, "topk", negative_class=3)


def test_bag_training_never_ends_worse_on_validation_than_the_patch_classifier():
    from napari_pathreview.training.mil import _score

    bags, labels = _bags(30, 0)
    val_bags, val_labels = _bags(20, 1)
    head = MILHead(8, 2, "max")
    with torch.no_grad():  # a patch classifier that already finds the witness instance
        head.classifier.weight.zero_()
        head.classifier.weight[1, 0] = 1.0
        head.classifier.bias.copy_(torch.tensor([3.0, 0.0]))
    before = _score(head, val_bags, val_labels)[:2]
    assert before[0] > 0.9
    # bags with flipped labels pull every epoch away from the truth: epoch 0 must be kept
    history = train_mil_head(
        head, bags, 1 - labels, val_bags, val_labels, epochs=3, lr=0.05, train_classifier=True
    )
    assert history[0]["epoch"] == 0
    assert all(h["val_balanced_accuracy"] < before[0] for h in history[1:])
    assert _score(head, val_bags, val_labels)[:2] == before


@pytest.mark.parametrize(("metric", "mode"), [("roc_auc", "max"), ("loss", "min")])
def test_bag_training_keeps_the_epoch_best_by_the_recipes_early_stopping_metric(metric, mode):
    from napari_pathreview.training.mil import _score

    bags, labels = _bags(30, 0)
    val_bags, val_labels = _bags(20, 1)
    torch.manual_seed(0)
    head = MILHead(8, 2, "attention", hidden=16)
    history = train_mil_head(
        head,
        bags,
        labels,
        val_bags,
        val_labels,
        epochs=6,
        lr=5e-3,
        train_classifier=True,
        metric=metric,
        mode=mode,
    )
    sign = 1.0 if mode == "max" else -1.0
    assert [h["val_score"] for h in history] == [sign * h[f"val_{metric}"] for h in history]
    kept = _score(head, val_bags, val_labels, metric, mode)[0]
    assert kept == pytest.approx(max(h["val_score"] for h in history), abs=1e-6)


def test_gated_attention_logits_are_the_attention_weighted_patch_logits():
    head = _head("attention")
    h = torch.randn(2, 7, 8)
    out = head(h)
    assert torch.allclose(out.attention.sum(1), torch.ones(2))
    weighted = (out.attention.unsqueeze(-1) * out.instance_logits).sum(1)
    assert torch.allclose(out.logits, weighted, atol=1e-5)


def test_padding_instances_never_pool():
    head = _head("max")
    h = torch.randn(1, 4, 8)
    h[0, 3] = 100.0  # a huge padding instance
    mask = torch.tensor([[True, True, True, False]])
    out = head(h, mask)
    assert torch.allclose(out.logits, out.instance_logits[:, :3].max(1).values)


def test_unknown_pooling_is_refused():
    with pytest.raises(InvalidInputError, match="MIL pooling 'mean'"):
        MILHead(8, 2, "mean")


@pytest.mark.parametrize("pooling", ["max", "topk", "attention"])
def test_a_single_patch_is_a_bag_of_one(pooling):
    model = create_model("patch_mil", 2, encoder="test_resnet", patch_size=16, pooling=pooling)
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        instance = model.head.classifier(model.embed(x))
        assert torch.allclose(model(x), instance, atol=1e-5)


def test_patch_grid_covers_the_image_and_maps_paint_back():
    tiles, grid = unfold_patches(torch.zeros(1, 3, 50, 70), 16, 8)
    assert grid == (6, 8) and tiles.shape == (48, 3, 16, 16)
    painted = grid_to_image(np.arange(48.0), grid, (50, 70), 16, 8)
    assert painted.shape == (50, 70)
    assert painted[0, 0] == 0 and painted[-1, -1] == 47


def test_a_patch_value_is_painted_at_its_centre_and_fades_to_the_next_centres():
    values = np.zeros(25)
    values[2 * 5 + 2] = 1.0  # patch (2, 2) covers pixels 16..31; its centre lies at 24.0
    painted = grid_to_image(values, (5, 5), (48, 48), 16, 8)
    peak = np.unravel_index(painted.argmax(), painted.shape)
    assert all(p in (23, 24) for p in peak)
    assert painted[peak] > 0.85
    assert np.allclose(painted[16:24, 24], painted[24:32, 24][::-1])  # symmetric about 24.0
    # nothing of it reaches the neighbouring patches' centres or beyond (it once covered 16..31)
    assert painted[:16, :].max() == 0 and painted[32:, :].max() == 0
    assert painted[23:25, 17].max() < 0.2 and painted[23:25, 30].max() < 0.2


def test_explain_gives_patch_and_attention_maps_on_the_grid():
    model = create_model("patch_mil", 3, encoder="test_resnet", patch_size=16, stride=8)
    maps = model.explain(torch.randn(2, 3, 48, 48))
    assert maps.patch_probs.shape == (2, 3, 5, 5)
    assert torch.allclose(maps.patch_probs.sum(1), torch.ones(2, 5, 5), atol=1e-5)
    assert torch.allclose(maps.attention.sum((1, 2)), torch.ones(2))


@pytest.mark.parametrize("pooling", ["topk", "attention"])
def test_a_fold_ensemble_predicts_the_mean_of_its_members(pooling):
    kwargs = {"encoder": "test_resnet", "patch_size": 16, "stride": 8, "pooling": pooling}
    if pooling == "topk":
        kwargs["negative_class"] = 0
    torch.manual_seed(0)
    folds = [create_model("patch_mil", 3, **kwargs).eval() for _ in range(3)]
    ensemble = create_model("patch_mil", 3, members=3, **kwargs).eval()
    ensemble.load_member_states([fold.state_dict() for fold in folds])
    x = torch.randn(2, 3, 48, 48)

    maps, singles = ensemble.explain(x), [fold.explain(x) for fold in folds]

    def mean(name: str) -> torch.Tensor:
        return torch.stack([getattr(single, name) for single in singles]).mean(0)

    assert ensemble.members == 3 and ensemble.head.dim == 3 * folds[0].head.dim
    torch.testing.assert_close(maps.probs, mean("probs"), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.patch_probs, mean("patch_probs"), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.attention, mean("attention"), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.softmax(ensemble(x), 1), mean("probs"), atol=1e-5, rtol=0)


def test_a_fold_ensemble_refuses_the_wrong_number_or_shape_of_members():
    kwargs = {"encoder": "test_resnet", "patch_size": 16}
    ensemble = create_model("patch_mil", 2, members=2, **kwargs)
    single = create_model("patch_mil", 2, **kwargs).state_dict()
    with pytest.raises(InvalidInputError, match="averages 2 model.*got 1"):
        ensemble.load_member_states([single])
    wider = create_model("patch_mil", 3, **kwargs).state_dict()  # a 3-class fold
    with pytest.raises(RuntimeError, match="size mismatch"):
        ensemble.load_member_states([single, wider])
    with pytest.raises(InvalidInputError, match="cannot take a new head"):
        ensemble.reset_classifier(4)


def _bags(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Positive bags hide one 'lesion' instance (feature 0 high) among background instances."""
    rng = np.random.default_rng(seed)
    bags, labels = [], []
    for i in range(n):
        bag = rng.normal(0, 1, (int(rng.integers(10, 30)), 8)).astype(np.float32)
        label = i % 2
        if label:
            bag[rng.integers(0, len(bag)), 0] += 6.0
        bags.append(bag)
        labels.append(label)
    return bags, np.asarray(labels)


def test_attention_head_learns_a_witness_instance_on_cached_bags():
    bags, labels = _bags(60, 0)
    val_bags, val_labels = _bags(20, 1)
    torch.manual_seed(0)
    head = MILHead(8, 2, "attention", hidden=16)
    history = train_mil_head(
        head, bags, labels, val_bags, val_labels, epochs=15, lr=5e-3, train_classifier=True
    )
    trained = [h for h in history if h["epoch"] >= 1]
    assert trained[-1]["train_loss"] < trained[0]["train_loss"]
    test_bags, test_labels = _bags(20, 2)
    predictions = predict_bags(head, test_bags)
    assert (predictions.probs.argmax(1) == test_labels).mean() >= 0.9
    witness = [int(np.argmax(b[:, 0])) for b, y in zip(test_bags, test_labels, strict=True) if y]
    peaks = [
        int(np.argmax(a)) for a, y in zip(predictions.attention, test_labels, strict=True) if y
    ]
    assert np.mean(np.equal(witness, peaks)) >= 0.8


def test_by_default_bag_training_keeps_the_patch_classifier_weights():
    bags, labels = _bags(10, 0)
    head = MILHead(8, 2, "attention", hidden=16)
    before = head.classifier.weight.detach().clone()
    attention_before = head.attention.value.weight.detach().clone()
    train_mil_head(head, bags, labels, bags, labels, epochs=2)
    assert torch.equal(head.classifier.weight, before)
    assert not torch.equal(head.attention.value.weight, attention_before)


def test_embeddings_are_written_once_and_reused(tmp_path: Path):
    model = create_model("patch_mil", 2, encoder="test_resnet", patch_size=16, stride=16).eval()
    encoder = PatchEncoder("test", model, model.head.dim, model.spec.mean, model.spec.std)
    images = [np.full((32, 48, 3), v, np.uint8) for v in (10, 200)]
    cache = encode_to_zarr(encoder, images, ["a.png", "b.png"], tmp_path / "e.zarr", 16, 16)
    assert cache.grids == ((2, 3), (2, 3)) and cache.bags[0].shape == (6, model.head.dim)
    again = read_cache(tmp_path / "e.zarr")
    assert again.keys == ("a.png", "b.png")
    np.testing.assert_allclose(again.bags[1], cache.bags[1], rtol=1e-2, atol=1e-2)
    reused = encode_to_zarr(encoder, [], ["a.png", "b.png"], tmp_path / "e.zarr", 16, 16)
    assert len(reused.bags) == 2  # nothing re-encoded: no images were even given


def test_encoder_spec_must_name_its_source():
    with pytest.raises(EmbeddingError, match="registry:NAME"):
        load_encoder("resnet18")


def test_a_timm_encoder_with_local_safetensors_weights(tmp_path: Path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", num_classes=1)
    save_file(source.state_dict(), str(tmp_path / "test_resnet.safetensors"))
    encoder = load_encoder(f"timm:test_resnet={tmp_path / 'test_resnet.safetensors'}")
    assert encoder.dim > 0
    out = encoder(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, encoder.dim)


def test_a_probe_learns_features_of_any_scale_and_reads_the_raw_embeddings():
    from napari_pathreview.training.probe import fit_probe

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    raw = rng.normal(0, 1, (200, 8)) + labels[:, None] * 0.8  # class 1 shifted in every axis
    raw = raw * 1000.0 + 5e4  # a foundation model's scale, far from unit
    classifier = torch.nn.Linear(8, 2)
    fit = fit_probe(
        classifier, (raw[::2], labels[::2], np.ones(100)), (raw[1::2], labels[1::2]),
        epochs=30, lr=0.01, weight_decay=0.0, batch_size=16, metric="roc_auc",
    )  # fmt: skip
    assert fit.best_score > 0.9 and len(fit.history) == 30
    with torch.no_grad():  # the standardisation is folded into the weights
        predicted = classifier(torch.as_tensor(raw[1::2]).float()).argmax(1).numpy()
    assert (predicted == labels[1::2]).mean() > 0.85


def test_a_probe_round_starts_afresh_whatever_the_classifier_held():
    from napari_pathreview.training.probe import fit_probe

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 40)
    features = rng.normal(0, 1, (80, 6)) + labels[:, None]
    settings = dict(epochs=3, lr=0.05, weight_decay=0.0, batch_size=8, seed=3)
    fits = []
    for start in (0.0, 7.0):  # a fresh classifier, and one a previous round left behind
        classifier = torch.nn.Linear(6, 2)
        torch.nn.init.constant_(classifier.weight, start)
        fit_probe(classifier, (features, labels, np.ones(80)), (features, labels), **settings)
        fits.append(torch.cat([classifier.weight.flatten(), classifier.bias]))
    torch.testing.assert_close(fits[0], fits[1])


def test_a_probe_on_a_single_patch_stays_finite():
    from napari_pathreview.training.probe import fit_probe

    classifier = torch.nn.Linear(4, 2)
    one = (np.ones((1, 4)), np.array([1]), np.ones(1))
    fit_probe(classifier, one, (np.ones((1, 4)), np.array([1])), epochs=2, lr=0.1,
              weight_decay=0.0, batch_size=4)  # fmt: skip
    assert torch.isfinite(classifier.weight).all() and torch.isfinite(classifier.bias).all()


def test_a_timm_encoder_without_a_file_is_never_left_random(
    tmp_path: Path, offline_hub, monkeypatch
):
    import timm
    from safetensors.torch import save_file

    from napari_pathreview.errors import WeightsError

    with pytest.raises(WeightsError, match="test_resnet"):  # nowhere to take its weights from
        load_encoder("timm:test_resnet")
    source = timm.create_model("test_resnet", num_classes=1)
    save_file(source.state_dict(), str(tmp_path / "test_resnet.safetensors"))
    monkeypatch.setenv("PATHREVIEW_PRETRAINED_DIR", str(tmp_path))
    encoder = load_encoder("timm:test_resnet")
    loaded = encoder.model.model.state_dict()
    stem = next(k for k in source.state_dict() if k.endswith("weight"))
    assert torch.equal(loaded[stem], source.state_dict()[stem])  # the folder's weights, not random
