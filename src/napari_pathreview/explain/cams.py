"""Class-activation maps through pytorch-grad-cam, with the mechanics a review tool needs.

pytorch-grad-cam owns the method maths (one ``BaseCAM`` with hooks; each method overrides one
small function). This module adds what its callers otherwise get wrong:

* target layers and the reshape transform come from the model (``cam_target_layers()``,
  ``cam_reshape_transform``) or are passed explicitly; they are never guessed;
* hooks are released, gradients freed and the model's train/eval mode restored after every
  call, so 100 calls leave no hooks and no memory behind (tested);
* CAM under test-time augmentation: every view's CAM is mapped back through its inverse
  transform (``tta.deaugment_maps``) and the views are averaged;
* a batched Score-CAM (:class:`BatchedScoreCAM`) that runs the channel-masked forwards in large
  chunks under ``torch.inference_mode``, computes the all-zero mask of dead channels once, and
  can optionally score only the ``top_k`` channels with the largest activation (an
  approximation: the other channels get weight 0, see its docstring);
* an EigenCAM whose SVD is the economy one (``full_matrices=False``): the same first right
  singular vector, without building the (h·w)² matrix pytorch-grad-cam builds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_grad_cam
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM, ScoreCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.explain.cam_grid import cam_layers
from napari_pathreview.explain.methods import CAM_METHOD_CLASSES, resolve_method

__all__ = [
    "CAM_METHODS",
    "BatchedScoreCAM",
    "CamBatch",
    "CamResult",
    "EconomyEigenCAM",
    "cam_layers",
    "compute_cam",
    "explain_batch",
    "explain_classes",
    "resolve_method",
]


@dataclass(frozen=True)
class CamResult:
    """One image's explanation.

    Attributes:
        cam: float32 H×W in [0, 1] at the image's resolution.
        method: Canonical method name (a key of ``CAM_METHODS``).
        target_class: Index of the class explained.
        target_label: Name of that class when known, else its index as text.
    """

    cam: np.ndarray
    method: str
    target_class: int
    target_label: str = ""


class _Sink(list):
    """A list that drops what is appended: silences the activation hook during masked forwards."""

    def append(self, item: object) -> None:  # noqa: D102 - list protocol
        return None


def check_scorecam_options(batch_size: int, top_k: int | None) -> None:
    """Refuse a Score-CAM batch size or top-k below 1 (callers check once, before a batch)."""
    if int(batch_size) < 1:
        raise InvalidInputError(f"Score-CAM batch_size must be >= 1, got {batch_size}")
    if top_k is not None and int(top_k) < 1:
        raise InvalidInputError(f"Score-CAM top_k must be >= 1 or None, got {top_k}")


class BatchedScoreCAM(ScoreCAM):
    """Score-CAM with the masked forwards batched, deduplicated and optionally restricted.

    Score-CAM weights channel k by the model's score for the input multiplied by channel k's
    upsampled, min–max normalised activation. pytorch-grad-cam does this with batches of 16,
    a ``.item()`` per output and the activation hook still recording every masked forward.
    Here:

    * masked inputs are built and scored ``batch_size`` channels at a time, under
      ``torch.inference_mode`` (and the model's memory format), scores read as one tensor;
    * channels whose activation is constant normalise to an all-zero mask; their masked input
      is the zero image, scored once and shared (exact);
    * ``top_k`` (optional) scores only the k channels with the largest spatial-maximum
      activation; the others get weight 0. This is an approximation: Score-CAM's CAM is
      ``sum_k w_k A_k`` with softmax weights that are nearly uniform, so channels of small
      activation contribute little whatever their weight. The benchmark reports its IoU
      against the exact map.

    Args:
        model: The classifier.
        target_layers: Layers whose activations make the masks.
        reshape_transform: Token → map transform for transformer layers, or None.
        batch_size: Masked inputs per forward.
        top_k: Channels to score per image, or None for all (exact Score-CAM).
        cancel: An event checked before every masked batch; once set, the call raises
            ``InterruptedError`` within one batch (a full Score-CAM is many forwards).
        progress: Called as ``progress(done, total)`` after every masked batch.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: list[nn.Module],
        reshape_transform: Callable | None = None,
        batch_size: int = 64,
        top_k: int | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__(model, target_layers, reshape_transform=reshape_transform)
        self.cancel = cancel
        self.progress = progress
        check_scorecam_options(batch_size, top_k)
        self.batch_size = int(batch_size)
        self.top_k = None if top_k is None else int(top_k)

    def get_cam_weights(
        self, input_tensor, target_layer, targets, activations, grads
    ) -> np.ndarray:
        """Softmax of the masked-input scores, one row of channel weights per image."""
        acts = torch.as_tensor(activations, dtype=torch.float32)
        recorded, self.activations_and_grads.activations = (
            self.activations_and_grads.activations,
            _Sink(),
        )
        try:
            with torch.inference_mode():
                scores = torch.stack(
                    [
                        self._image_scores(input_tensor[i : i + 1].detach(), acts[i], targets[i])
                        for i in range(acts.shape[0])
                    ]
                )
        finally:
            self.activations_and_grads.activations = recorded
        return torch.softmax(scores, dim=-1).numpy()

    @staticmethod
    def _live(acts: torch.Tensor) -> torch.Tensor:
        """Channels whose activation varies (a constant one normalises to an all-zero mask)."""
        flat = acts.reshape(acts.shape[0], -1)
        peak = flat.max(dim=1).values
        return (peak - flat.min(dim=1).values) > 1e-12 * peak.abs().clamp(min=1.0)

    def _channels(self, acts: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        """Live channels to score, largest spatial-maximum activation first (top_k of them)."""
        peak = acts.reshape(acts.shape[0], -1).max(dim=1).values
        ranked = torch.where(live, peak, torch.full_like(peak, -torch.inf))
        order = torch.argsort(ranked, descending=True)[: int(live.sum())]
        return order if self.top_k is None else order[: self.top_k]

    def _image_scores(self, image: torch.Tensor, acts: torch.Tensor, target) -> torch.Tensor:
        """Scores of one image's masked inputs: (C,), -inf for channels not scored."""
        image = image.to(self.device)
        live = self._live(acts)
        scores = torch.full((acts.shape[0],), -torch.inf)
        if not live.all():  # constant channels: their masked input is the zero image (exact)
            scores[~live] = self._score(torch.zeros_like(image), target)[0]
        channels = self._channels(acts, live)
        for start in range(0, channels.numel(), self.batch_size):
            if self.cancel is not None and self.cancel.is_set():
                raise InterruptedError("Score-CAM cancelled")
            if self.progress is not None:
                self.progress(start, int(channels.numel()))
            chunk = channels[start : start + self.batch_size]
            up = F.interpolate(
                acts[chunk][None].to(self.device),
                size=image.shape[-2:],
                mode="bilinear",
                align_corners=True,
            )[0]
            lo = up.amin(dim=(1, 2), keepdim=True)
            hi = up.amax(dim=(1, 2), keepdim=True)
            masks = (up - lo) / (hi - lo + 1e-8)
            scores[chunk] = self._score(image * masks[:, None], target)
        return scores

    def _score(self, batch: torch.Tensor, target) -> torch.Tensor:
        # channels_last input makes the convolutions take the NHWC path even when the weights
        # are NCHW: 2-2.5x faster on CPU, and the layout tensor cores want on GPU.
        batch = batch.contiguous(memory_format=torch.channels_last)
        logits = self.model(batch).float()
        category = getattr(target, "category", None)
        if isinstance(category, int | np.integer):
            return logits[:, int(category)].cpu()
        return torch.stack([torch.as_tensor(target(row)).float() for row in logits]).cpu()


class EconomyEigenCAM(EigenCAM):
    """EigenCAM with the economy SVD: the same first principal direction, far less work.

    pytorch-grad-cam calls ``np.linalg.svd(full_matrices=True)``, which builds the full
    (h·w)×(h·w) U it never uses; only the first right singular vector is needed.
    """

    def get_cam_image(
        self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth
    ):
        acts = np.nan_to_num(np.asarray(activations, dtype=np.float32))
        out = []
        for a in acts:
            flat = a.reshape(a.shape[0], -1).T
            flat = flat - flat.mean(axis=0)
            _, _, vt = np.linalg.svd(flat, full_matrices=False)
            out.append((flat @ vt[0]).reshape(a.shape[1:]))
        return np.float32(out)


_OURS: dict[str, type[BaseCAM]] = {
    "BatchedScoreCAM": BatchedScoreCAM,
    "EconomyEigenCAM": EconomyEigenCAM,
}


def _cam_class(class_name: str) -> type[BaseCAM]:
    """Ours where we have a faster one, else pytorch-grad-cam's class of that name."""
    return _OURS.get(class_name) or getattr(pytorch_grad_cam, class_name)


CAM_METHODS: dict[str, type[BaseCAM]] = {
    name: _cam_class(class_name) for name, class_name in CAM_METHOD_CLASSES.items()
}
"""Canonical method name → pytorch-grad-cam class (names from ``methods.CAM_METHOD_CLASSES``)."""


def _is_channels_last(model: nn.Module) -> bool:
    for param in model.parameters():
        if param.ndim == 4:
            return param.is_contiguous(memory_format=torch.channels_last) and param.shape[1] > 1
    return False


def _targets(target_class: int | Sequence[int], n: int) -> list[ClassifierOutputTarget]:
    classes = (
        [int(target_class)] * n
        if isinstance(target_class, int | np.integer)
        else list(target_class)
    )
    if len(classes) != n:
        raise InvalidInputError(f"{len(classes)} target classes for {n} images")
    return [ClassifierOutputTarget(int(c)) for c in classes]


def _leaf_output(module: nn.Module, inputs: object, output: object) -> object:
    """Forward hook: make the target layer's output a fresh autograd leaf.

    Backward then runs only from the logits down to the target layer (the gradients CAMs
    use) instead of through the whole backbone to the input, and no weight gradients are
    computed; the activation gradients are exactly the same.
    """
    if isinstance(output, torch.Tensor):
        return output.detach().requires_grad_(True)
    return None


def _run_cam(
    cls: type[BaseCAM],
    model: nn.Module,
    x: torch.Tensor,
    target_sets: list[list[ClassifierOutputTarget]],
    layers: list[nn.Module],
    reshape: Callable | None,
    options: dict,
) -> tuple[list[np.ndarray], torch.Tensor | None]:
    """One pytorch-grad-cam CAM over one forward of ``x``: (the maps of each target set, the
    logits of that forward, detached, on the CPU; None if the method kept none); hooks, graph
    and parameter flags restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    uses_gradients = not issubclass(cls, (ScoreCAM, EigenCAM))
    # Registered before the CAM's own hooks, so those see (and store) the leaf tensor.
    leaf_hooks = (
        [layer.register_forward_hook(_leaf_output) for layer in layers] if uses_gradients else []
    )
    cam = None
    try:
        for param, _ in flags:
            param.requires_grad_(False)
        cam = cls(model=model, target_layers=layers, reshape_transform=reshape, **options)
        with torch.inference_mode(False), torch.enable_grad():
            maps = _target_set_maps(cam, x.detach().clone(), target_sets)
        outputs = getattr(cam, "outputs", None)
        logits = outputs.detach().float().cpu() if isinstance(outputs, torch.Tensor) else None
        return maps, logits
    finally:
        for handle in leaf_hooks:
            handle.remove()
        if cam is not None:
            cam.activations_and_grads.release()
            cam.outputs = None
        for param, flag in flags:
            param.requires_grad_(flag)
            param.grad = None


def _target_set_maps(
    cam: BaseCAM, x: torch.Tensor, target_sets: list[list[ClassifierOutputTarget]]
) -> list[np.ndarray]:
    """Each target set's maps. One set: pytorch-grad-cam's own call. Several: its ``forward``
    with the forward run once, its activations shared, and for a gradient method one backward
    per set (from the logits to the target layer only: :func:`_leaf_output`), so each set's
    maps are those its own call would give."""
    if len(target_sets) == 1:
        return [np.asarray(cam(input_tensor=x, targets=target_sets[0]), dtype=np.float32)]
    cam.outputs = outputs = cam.activations_and_grads(x)
    maps = []
    for targets in target_sets:
        if cam.uses_gradients:
            cam.activations_and_grads.gradients = []  # this backward's only
            cam.model.zero_grad()
            loss = sum(target(output) for target, output in zip(targets, outputs, strict=True))
            loss.backward(retain_graph=True)
        per_layer = cam.compute_cam_per_layer(x, targets, False)
        maps.append(np.asarray(cam.aggregate_multi_layers(per_layer), dtype=np.float32))
    return maps


def _predicted_classes(model: nn.Module, x: torch.Tensor, tta: str) -> list[int]:
    with torch.inference_mode():
        if tta == "none":
            return model(x).float().argmax(dim=1).tolist()
        from napari_pathreview import tta as tta_mod

        probs = torch.softmax(model(tta_mod.augment_batch(x, tta)).float(), dim=1)
        return tta_mod.merge_probabilities(probs, tta).argmax(dim=1).tolist()


def _rescale(maps: np.ndarray) -> np.ndarray:
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    return np.where(hi - lo > 1e-12, (maps - lo) / np.maximum(hi - lo, 1e-12), 0.0).astype(
        np.float32
    )


@dataclass(frozen=True)
class CamBatch:
    """A batch's CAMs and the logits of the forward pass that made them.

    Attributes:
        maps: float32 N×H×W, each map min–max scaled to [0, 1] (all zeros if flat).
        logits: float32 (V·N)×K logits of the CAM's own forward (V views, view-major as
            ``tta.augment_batch`` stacks them), on the CPU; None if the method kept none.
            A caller that weights maps by probabilities reads them here instead of running
            the model a second time.
    """

    maps: np.ndarray
    logits: torch.Tensor | None


def compute_cam(
    model: nn.Module,
    input_tensor: torch.Tensor,
    method: str = "gradcam",
    target_class: int | Sequence[int] | None = None,
    tta: str = "none",
    **options: object,
) -> np.ndarray:
    """CAMs for a batch of model-ready inputs, one H×W map in [0, 1] per image: the maps of
    :func:`explain_batch` (same arguments)."""
    return explain_batch(model, input_tensor, method, target_class, tta, **options).maps


def explain_batch(
    model: nn.Module,
    input_tensor: torch.Tensor,
    method: str = "gradcam",
    target_class: int | Sequence[int] | None = None,
    tta: str = "none",
    *,
    target_layers: Sequence[nn.Module] | None = None,
    reshape_transform: Callable | None = None,
    batch_size: int = 64,
    top_k: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CamBatch:
    """CAMs for a batch of model-ready inputs, with the logits of the CAM's forward pass.

    Args:
        model: Classifier; its ``cam_target_layers()`` / ``cam_reshape_transform`` are used
            unless ``target_layers`` is given. Its train/eval mode is restored afterwards.
        input_tensor: N×C×H×W, already resized and normalised as the model expects.
        method: A ``CAM_METHODS`` name (aliases like "Grad-CAM++" accepted).
        target_class: Class to explain (one for all, or one per image); None = the model's
            argmax (after TTA merging when ``tta`` is not "none").
        tta: "none", "flips" or "d4": CAM of every view, inverted back and averaged.
        target_layers: Explicit layers to hook (for models without the contract).
        reshape_transform: Explicit reshape transform for ``target_layers``.
        batch_size: Score-CAM masked inputs per forward.
        top_k: Score-CAM channels to score (None = all, exact).
        cancel: Event checked before the CAM and, in Score-CAM, before every masked batch;
            once set, raises ``InterruptedError``.
        progress: Score-CAM's ``progress(done, total)`` over its masked batches.
    """
    maps, logits = _explain(
        model,
        input_tensor,
        method,
        [target_class],
        tta,
        target_layers=target_layers,
        reshape_transform=reshape_transform,
        batch_size=batch_size,
        top_k=top_k,
        cancel=cancel,
        progress=progress,
    )
    return CamBatch(maps[0], logits)


def explain_classes(
    model: nn.Module,
    input_tensor: torch.Tensor,
    method: str,
    classes: Sequence[int],
    tta: str = "none",
    **options: Any,
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Every class of ``classes`` explained from one forward of the batch: a caller that
    learns which class it wants only from these logits runs the model once, not twice.

    Arguments as :func:`explain_batch`'s. Returns (float32 C×N×H×W maps, each class's as
    :func:`explain_batch` gives them; the logits of the one forward, as ``CamBatch.logits``).
    A gradient method costs one backward per class; Score-CAM its masked forwards per class.
    """
    maps, logits = _explain(model, input_tensor, method, [int(c) for c in classes], tta, **options)
    return np.stack(maps), logits


def _explain(
    model: nn.Module,
    input_tensor: torch.Tensor,
    method: str,
    target_classes: list[Any],
    tta: str,
    *,
    target_layers: Sequence[nn.Module] | None = None,
    reshape_transform: Callable | None = None,
    batch_size: int = 64,
    top_k: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[np.ndarray], torch.Tensor | None]:
    """Each of ``target_classes`` (an index, one per image, or None: the argmax) explained
    from one forward: ([N×H×W maps in [0, 1]] per entry, the forward's logits)."""
    name = resolve_method(method)
    if input_tensor.ndim != 4:
        raise InvalidInputError(
            f"input_tensor must be N×C×H×W, got shape {tuple(input_tensor.shape)}"
        )
    layers, reshape = cam_layers(model, target_layers, reshape_transform)
    device = next(model.parameters()).device
    x = input_tensor.to(device=device, dtype=torch.float32)
    n = x.shape[0]
    was_training = model.training
    model.eval()
    try:
        sets = [
            _targets(_predicted_classes(model, x, tta) if c is None else c, n)
            for c in target_classes
        ]
        if cancel is not None and cancel.is_set():
            raise InterruptedError("CAM cancelled")
        options = (
            {"batch_size": batch_size, "top_k": top_k, "cancel": cancel, "progress": progress}
            if name == "scorecam"
            else {}
        )
        if tta == "none":
            maps, logits = _run_cam(CAM_METHODS[name], model, x, sets, layers, reshape, options)
            return [_rescale(m) for m in maps], logits
        from napari_pathreview import tta as tta_mod

        views = tta_mod.augment_batch(x, tta)
        view_count = views.shape[0] // n
        sets = [targets * view_count for targets in sets]
        maps, logits = _run_cam(CAM_METHODS[name], model, views, sets, layers, reshape, options)
        restored = [tta_mod.deaugment_maps(torch.from_numpy(m), tta) for m in maps]
        means = [torch.as_tensor(r).float().mean(dim=0).numpy() for r in restored]
        return [_rescale(m) for m in means], logits
    finally:
        model.train(was_training)
