"""CAMs through pytorch-grad-cam: every method, hooks released, TTA, batched Score-CAM."""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np
import pytest
import torch
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.explain.cams import CAM_METHODS, compute_cam, resolve_method
from napari_pathreview.explain.metrics import roi_iou


def _rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; torch tensors are not in tracemalloc)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pytest.skip("no /proc/self/statm on this platform")


REQUIRED = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam", "xgradcam", "hirescam")


def test_required_methods_are_available() -> None:
    assert set(REQUIRED) <= set(CAM_METHODS)


@pytest.mark.parametrize("alias,name", [("Grad-CAM++", "gradcam++"), ("score_cam", "scorecam")])
def test_method_aliases_resolve(alias: str, name: str) -> None:
    assert resolve_method(alias) == name


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown CAM method"):
        resolve_method("magiccam")


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_method_returns_one_unit_map_per_image(resnet18, method: str) -> None:
    x = torch.randn(2, 3, 64, 64)
    layers = [resnet18.layer4[-1]]
    cams = compute_cam(resnet18, x, method, target_class=1, target_layers=layers, batch_size=256)
    assert cams.shape == (2, 64, 64) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0


def test_model_without_target_layers_is_not_guessed(resnet18) -> None:
    with pytest.raises(InvalidInputError, match="cam_target_layers"):
        compute_cam(resnet18, torch.randn(1, 3, 32, 32), "gradcam")


def test_model_mode_is_restored(disc_model) -> None:
    disc_model.train()
    try:
        compute_cam(disc_model, torch.randn(1, 1, 32, 32), "gradcam")
        assert disc_model.training
    finally:
        disc_model.eval()


def test_hooks_and_memory_released_over_100_calls(disc_model) -> None:
    layer = disc_model.cam_target_layers()[0]
    x = torch.randn(1, 1, 32, 32)
    for _ in range(5):
        compute_cam(disc_model, x, "gradcam")
    gc.collect()
    rss_before = _rss_bytes()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        compute_cam(disc_model, x, "gradcam")
        assert len(layer._forward_hooks) == 0 and len(layer._backward_hooks) == 0
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 512 * 1024, f"Python memory grew by {grown} bytes over 100 CAM calls"
    rss_grown = _rss_bytes() - rss_before
    assert rss_grown < 32 * 2**20, f"RSS grew by {rss_grown / 2**20:.1f} MiB over 100 CAM calls"
    assert all(p.grad is None for p in disc_model.parameters())


def test_scorecam_hooks_released(disc_model) -> None:
    layer = disc_model.cam_target_layers()[0]
    compute_cam(disc_model, torch.randn(1, 1, 32, 32), "scorecam")
    assert len(layer._forward_hooks) == 0


def test_batched_scorecam_equals_pytorch_grad_cam(disc_model) -> None:
    x = torch.randn(2, 1, 32, 32)
    layer = disc_model.cam_target_layers()[0]
    reference = ScoreCAM(disc_model, [layer])
    try:
        expected = reference(x, [ClassifierOutputTarget(1)] * 2)
    finally:
        reference.activations_and_grads.release()
    ours = compute_cam(disc_model, x, "scorecam", target_class=1, batch_size=5)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_scorecam_top_k_all_channels_is_exact(disc_model) -> None:
    x = torch.randn(1, 1, 32, 32)
    exact = compute_cam(disc_model, x, "scorecam", target_class=1)
    all_k = compute_cam(disc_model, x, "scorecam", target_class=1, top_k=16)
    np.testing.assert_allclose(all_k, exact, atol=1e-6)


def test_scorecam_top_k_changes_the_map_when_it_drops_channels(disc_model, disc_batch) -> None:
    x, _, _ = disc_batch(2, 48, np.random.default_rng(3))
    exact = compute_cam(disc_model, x[1:], "scorecam", target_class=1)
    one = compute_cam(disc_model, x[1:], "scorecam", target_class=1, top_k=1)
    assert not np.allclose(one, exact, atol=1e-3)


def test_scorecam_rejects_bad_batch_size(disc_model) -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        compute_cam(disc_model, torch.randn(1, 1, 16, 16), "scorecam", target_class=0, batch_size=0)


def test_d4_cam_is_equivariant_to_rotation(disc_model, disc_batch) -> None:
    x, _, _ = disc_batch(2, 32, np.random.default_rng(1))
    x = x[1:]
    cam = compute_cam(disc_model, x, "gradcam", target_class=1, tta="d4")
    cam_rot = compute_cam(
        disc_model, torch.rot90(x, 1, dims=(-2, -1)), "gradcam", target_class=1, tta="d4"
    )
    np.testing.assert_allclose(cam_rot[0], np.rot90(cam[0], 1), atol=1e-4)


def test_tta_cam_is_in_the_input_frame(disc_model, disc_batch) -> None:
    x, _, masks = disc_batch(2, 48, np.random.default_rng(2))
    cam = compute_cam(disc_model, x[1:], "gradcam", target_class=1, tta="flips")
    assert roi_iou(cam[0], masks[1].numpy()) > 0.5


def test_disc_cnn_gradcam_finds_the_disc(disc_model, disc_batch) -> None:
    x, labels, masks = disc_batch(8, 48, np.random.default_rng(7))
    with torch.inference_mode():
        predicted = disc_model(x).argmax(1)
    assert (predicted == labels).float().mean() >= 0.75, "the disc CNN did not learn"
    positives = torch.nonzero(labels).flatten()
    cams = compute_cam(disc_model, x[positives], "gradcam", target_class=1)
    ious = [
        roi_iou(c, m.numpy(), threshold=0.5) for c, m in zip(cams, masks[positives], strict=True)
    ]
    assert np.mean(ious) > 0.5, ious


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam"])
def test_gradient_methods_match_pytorch_grad_cam(resnet18, method: str) -> None:
    # Our call stops backward at the target layer; the maps must not change.
    x = torch.randn(2, 3, 64, 64)
    layer = resnet18.layer4[-1]
    cam = CAM_METHODS[method](resnet18, [layer])
    try:
        expected = cam(x, [ClassifierOutputTarget(2)] * 2)
    finally:
        cam.activations_and_grads.release()
        resnet18.zero_grad(set_to_none=True)
    ours = compute_cam(resnet18, x, method, target_class=2, target_layers=[layer])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert all(p.requires_grad for p in resnet18.parameters())


@pytest.mark.parametrize(
    ("method", "tta"), [("gradcam", "none"), ("gradcam++", "flips"), ("eigencam", "none")]
)
def test_every_class_from_one_forward_is_each_class_s_own_cam(resnet18, method, tta) -> None:
    """``explain_classes``: one forward of the batch, a backward per class, and each class's
    maps and the logits exactly those of explaining that class alone."""
    from napari_pathreview.explain.cams import explain_batch, explain_classes

    x = torch.randn(2, 3, 64, 64)
    layers = {"target_layers": [resnet18.layer4[-1]]}
    forwards: list[int] = []
    hook = resnet18.register_forward_hook(lambda m, i, out: forwards.append(out.shape[0]))
    try:
        maps, logits = explain_classes(resnet18, x, method, [0, 1, 2], tta, **layers)
    finally:
        hook.remove()
    assert forwards == [logits.shape[0]] and maps.shape == (3, 2, 64, 64)  # every view, once
    for k in range(3):
        alone = explain_batch(resnet18, x, method, k, tta, **layers)
        np.testing.assert_array_equal(maps[k], alone.maps)
        np.testing.assert_array_equal(logits, alone.logits)
    if method != "eigencam":  # EigenCAM's map is the same for every class
        assert not np.array_equal(maps[0], maps[1])
