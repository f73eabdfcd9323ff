"""The predictor: a registered model plus everything needed to feed it and read its output.

decode → QC flags (at the card's thresholds) → the card's preprocessing spec (crop, resample
to the trained-at resolution, stain normalisation to the fitted target, centre crop, mean/std:
the functions of ``napari_pathreview.preprocessing`` that training's evaluation transform uses
too) → batch → ``torch.inference_mode``, AMP on CUDA, channels_last → TTA merge →
probabilities and the decision at the card's threshold. Long runs are generators
(:meth:`Predictor.iter_predict`) that yield :class:`Progress` and honour a cancel event, so a
napari ``thread_worker`` can wrap them and tests can iterate them synchronously.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.device import amp_dtype, is_out_of_memory, resolve_device
from napari_pathreview.inference.preprocess import (
    decode,
    image_quality,
    normalise,
    resolve_stain,
    size_check,
    spec_for,
    to_batch,
)
from napari_pathreview.inference.progress import Progress
from napari_pathreview.preprocessing import (
    PreprocessSpec,
    cam_to_image,
    crop_box,
    plan,
)
from napari_pathreview.registry.card import decision_threshold, qc_config

__all__ = ["Prediction", "Predictor", "Progress"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One image's prediction.

    Attributes:
        path: Source file, or None for arrays.
        probabilities: Class name → probability (TTA-merged).
        label: Decision: binary models compare P(classes[-1]) with the card's threshold;
            others take the most probable class.
        threshold: The decision threshold used (None when the decision is an argmax).
        qc: ``stain.QCResult`` for histology models (None when QC is off or not applicable).
        stain: Stain method applied.
        tta: TTA mode applied.
        seconds: Wall time attributed to this image (its share of its batch).
        model: ``name@version`` of the model.
    """

    path: str | None
    probabilities: dict[str, float]
    label: str
    threshold: float | None
    qc: Any
    stain: str
    tta: str
    seconds: float
    model: str = ""

    @property
    def label_index(self) -> int:
        return list(self.probabilities).index(self.label)


CPU_BATCH_SIZE = 8
ACCELERATOR_BATCH_SIZE = 32


def default_batch_size(device: torch.device) -> int:
    """Inputs per forward when the caller does not say.

    On a CPU small batches stay in cache: resnet50 at 224 px runs 54 ms per image at batch 8
    and 76 ms at batch 32 on the 2-core machines this was measured on
    (``benchmarks/inference.py``); accelerators want large batches.
    """
    return CPU_BATCH_SIZE if device.type == "cpu" else ACCELERATOR_BATCH_SIZE


class Predictor:
    """A model and its card, ready to predict, tile and explain.

    Args:
        model: The classifier (``registry.load`` output or any module with a matching card).
        card: Its ``registry.ModelCard``.
        device: "auto", "cpu", "cuda" or "mps".
        stain: None (the card's method and fitted target), a method name, a state dict or a
            fitted normaliser.
        tta: "none", "flips" or "d4"; None: the card's (``ModelCard.tta``, the views its
            threshold and two-film calibration were fitted under).
        batch_size: Model inputs per forward, TTA views included; None picks the device's
            default (``default_batch_size``) (so memory use does not grow
            with the TTA mode: d4 at 32 puts 4 images × 8 views through each forward); halved
            automatically on CUDA out-of-memory.
        qc: Run quality control on histology images (flags only; nothing is dropped), under
            the thresholds the model was trained under (``ModelCard.qc``).
        channels_last: Put the model in channels_last memory format (faster convolutions).
    """

    def __init__(
        self,
        model: nn.Module,
        card: Any,
        device: str = "auto",
        stain: Any = None,
        tta: str | None = None,
        batch_size: int | None = None,
        qc: bool = True,
        channels_last: bool = True,
    ) -> None:
        from napari_pathreview import tta as tta_mod
        from napari_pathreview.registry.card import reading_tta

        tta = reading_tta(card, tta)
        tta_mod.get_views(tta)  # validates the mode
        if batch_size is not None and int(batch_size) < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.card = card
        self.device = resolve_device(device)
        if batch_size is None:
            batch_size = default_batch_size(self.device)
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.amp_dtype = amp_dtype(self.device)
        self.spec = spec_for(card, model)
        self._cam_grid: tuple[int, int] | None = None  # see require_cam_grid
        tta_mod.check_input_shape(tta, *self.spec.hw)  # d4 on a non-square model: refuse now
        self.normalizer = resolve_stain(card, stain)
        self.stain_name = str(getattr(self.normalizer, "name", "none"))
        self.tta = tta
        self.batch_size = int(batch_size)
        self.qc = qc and card.modality == "histology"
        self.qc_config = qc_config(card)
        self.classes = tuple(card.classes)

    @classmethod
    def from_registry(cls, ref: str, registry: Any = None, **kwargs: Any) -> Predictor:
        """A predictor for ``"name"`` or ``"name@version"`` from the model registry.

        Raises:
            ModelNotFoundError: no such model or version (the message lists what exists).
        """
        from napari_pathreview.registry import ModelRegistry, parse_model_ref

        name, version = parse_model_ref(ref)
        registry = registry if registry is not None else ModelRegistry()
        model = registry.load(name, version, device="cpu")
        return cls(model, model.card, **kwargs)

    @property
    def model_ref(self) -> str:
        ref = getattr(self.card, "ref", None)
        return ref if isinstance(ref, str) else f"{self.card.name}@{self.card.version}"

    @property
    def threshold(self) -> float | None:
        """The decision threshold (one rule: ``registry.card.decision_threshold``)."""
        return decision_threshold(self.card, self.classes)

    # -- the forward path ----------------------------------------------------------------------
    def prepare(
        self,
        images: Sequence[np.ndarray],
        spec: PreprocessSpec | None = None,
        um_per_px: Sequence[float | None] | None = None,
    ) -> torch.Tensor:
        """RGB uint8 images → the normalised float batch the model sees (on the device).

        The same functions build training's evaluation tensors (``preprocessing``), so a
        model is fed exactly as it was evaluated.

        Args:
            images: RGB uint8 H×W×3 arrays.
            spec: Preprocessing to use instead of the card's (e.g. ``spec.uncropped()``).
            um_per_px: Each image's physical pixel size (µm), None where unknown; with a
                spec that records ``pixel_size`` a known one resamples to it.
        """
        spec = spec or self.spec
        normalizer = self.normalizer if self.stain_name != "none" else None
        batch = to_batch(list(images), spec, normalizer, um_per_px).to(self.device)
        return normalise(batch, spec)

    def cam_to_image(
        self,
        cam: np.ndarray,
        image: np.ndarray,
        spec: PreprocessSpec | None = None,
        um_per_px: float | None = None,
    ) -> np.ndarray:
        """A network-size CAM of ``image`` (prepared with ``spec``) mapped back onto it."""
        spec = spec or self.spec
        placement = plan(image.shape, crop_box(image, spec), spec, um_per_px)
        return cam_to_image(cam, placement, image.shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        from napari_pathreview import tta as tta_mod

        views = tta_mod.augment_batch(x, self.tta)
        if self.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            logits = self.model(views).float()
        return self.probabilities_of_logits(logits)

    def probabilities_of_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """N×K probabilities from the (V·N)×K logits of this predictor's TTA views (view-major,
        as ``tta.augment_batch`` stacks them): the one rule for its own forward and for the
        logits a CAM's forward already computed (``explain.explain_batch``)."""
        from napari_pathreview import tta as tta_mod

        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        return tta_mod.merge_probabilities(probs, self.tta)

    @property
    def images_per_forward(self) -> int:
        """Images whose TTA views together fill one forward of ``batch_size`` inputs."""
        from napari_pathreview import tta as tta_mod

        return max(1, self.batch_size // tta_mod.num_views(self.tta))

    def probabilities(
        self,
        images: Sequence[np.ndarray],
        um_per_px: Sequence[float | None] | None = None,
        spec: PreprocessSpec | None = None,
    ) -> np.ndarray:
        """N×K probabilities of RGB uint8 images, halving the batch on out-of-memory.

        ``spec`` overrides the card's preprocessing (the slide engine passes model-size
        tiles with resize and crop switched off).
        """
        out: list[np.ndarray] = []
        start = 0
        with torch.inference_mode():
            while start < len(images):
                stop = start + self.images_per_forward
                chunk = images[start:stop]
                sizes = um_per_px[start:stop] if um_per_px is not None else None
                try:
                    out.append(self._forward(self.prepare(chunk, spec, sizes)).cpu().numpy())
                except (RuntimeError, MemoryError) as error:
                    if not is_out_of_memory(error) or self.batch_size == 1:
                        raise
                    self.batch_size = max(1, self.batch_size // 2)
                    logger.warning("out of memory: batch size halved to %d", self.batch_size)
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                start += len(chunk)
        return np.concatenate(out, axis=0)

    def decide(self, probs: np.ndarray) -> str:
        """The label for one probability vector (threshold on the last class for binary)."""
        threshold = self.threshold
        if threshold is not None:
            return self.classes[-1] if probs[-1] >= threshold else self.classes[0]
        return self.classes[int(np.argmax(probs))]

    # -- whole images ----------------------------------------------------------------------------

    def to_prediction(
        self, probs: np.ndarray, path: str | None = None, qc: Any = None, seconds: float = 0.0
    ) -> Prediction:
        """One image's class probabilities as a ``Prediction`` under this predictor's settings.

        Raises:
            NonFiniteOutputError: A probability is NaN or infinite; a NaN compares False with
                the threshold and would silently read as the first class.
        """
        if not np.all(np.isfinite(probs)):
            from napari_pathreview.errors import NonFiniteOutputError

            raise NonFiniteOutputError(
                f"model {self.model_ref} gave non-finite probabilities {np.asarray(probs).tolist()}"
                f" for {path or 'the image'}: its weights or the card's mean/std are broken; "
                "re-import or re-train the model"
            )
        return Prediction(
            path=path,
            probabilities={c: float(p) for c, p in zip(self.classes, probs, strict=True)},
            label=self.decide(probs),
            threshold=self.threshold,
            qc=qc,
            stain=self.stain_name,
            tta=self.tta,
            seconds=seconds,
            model=self.model_ref,
        )

    def quality(self, image: Any) -> Any:
        """QC of one image decoded as ``iter_predict`` decodes it (a pyramid's preview level),
        so a caller that classifies it another way (the dock's tiles) reports the same check.
        None when QC is off or the model is not histology's."""
        return self._qc(decode(image, min_side=min(self.spec.hw)))

    def _qc(self, decoded: Any) -> Any:
        """Quality control of one decoded image under the card's thresholds
        (``inference.preprocess.image_quality``); the size rule refuses whether or not QC runs."""
        if not self.qc:
            size_check(decoded, self.spec)
            return None
        return image_quality(decoded, self.spec, self.qc_config)

    def _predict_chunk(self, items: Sequence[Any]) -> list[Prediction]:
        start = time.perf_counter()
        decoded = [decode(item, min_side=min(self.spec.hw)) for item in items]
        qcs = [self._qc(d) for d in decoded]
        probs = self.probabilities([d.rgb for d in decoded], [d.um_per_px for d in decoded])
        seconds = (time.perf_counter() - start) / len(items)
        return [
            self.to_prediction(row, path=d.path, qc=qc, seconds=seconds)
            for d, qc, row in zip(decoded, qcs, probs, strict=True)
        ]

    def iter_predict(
        self, images: Sequence[Any], cancel: threading.Event | None = None
    ) -> Iterator[Progress | Prediction]:
        """Predict batch by batch, yielding a Progress before each batch and every Prediction.

        Stops before the next batch once ``cancel`` is set, yielding a final
        ``Progress(cancelled=True)``.
        """
        items = list(images)
        total = len(items)
        for start in range(0, total, self.batch_size):
            if cancel is not None and cancel.is_set():
                yield Progress(start, total, "cancelled", cancelled=True)
                return
            yield Progress(
                start, total, f"predicting {start + 1}-{min(start + self.batch_size, total)}"
            )
            yield from self._predict_chunk(items[start : start + self.batch_size])
        yield Progress(total, total, "done")

    def predict(self, images: Sequence[Any]) -> list[Prediction]:
        """Predictions for paths, ``LoadedImage``s or arrays, in input order."""
        return [p for p in self.iter_predict(images) if isinstance(p, Prediction)]

    # -- tiles and explanations ------------------------------------------------------------------
    def predict_tiled(
        self,
        image_or_levels: Any,
        level: int = 0,
        tile_size: int | None = None,
        overlap: float = 0.25,
        **kwargs: Any,
    ):
        """Sliding-window prediction of a large image (:func:`inference.tiling.predict_tiled`)."""
        from napari_pathreview.inference.tiling import predict_tiled

        return predict_tiled(
            self, image_or_levels, level=level, tile_size=tile_size, overlap=overlap, **kwargs
        )

    def target_index(self, target_class: int | str | None, probs: np.ndarray) -> int:
        """The class to explain: a given index or name, else the decision for ``probs``."""
        if target_class is None:
            return self.classes.index(self.decide(probs))
        if isinstance(target_class, str):
            if target_class not in self.classes:
                raise InvalidInputError(f"unknown class {target_class!r}; classes: {self.classes}")
            return self.classes.index(target_class)
        if not 0 <= int(target_class) < len(self.classes):
            raise InvalidInputError(f"target class {target_class} out of range for {self.classes}")
        return int(target_class)

    def require_cam_grid(self) -> PreprocessSpec:
        """The spec CAMs read images with, once its CAM grid is known to localise.

        A CNN explains the whole resized image (no evaluation crop), so the CAM has no blank
        border; token models (ViT, with a reshape transform) need their fixed input size.
        The grid (``explain.cam_grid``) costs one forward, once per predictor.

        Raises:
            CamResolutionError: the CAM layer is too coarse at that size (resnet18 at 32 px
                is 1×1): every CAM would be flat, so none is computed.
        """
        from napari_pathreview.explain.cam_grid import (
            CamResolutionError,
            cam_grid,
            cam_grid_note,
            can_localise,
        )

        fixed_size = getattr(self.model, "cam_reshape_transform", None) is not None
        spec = self.spec if fixed_size else self.spec.uncropped()
        if self._cam_grid is None:
            self._cam_grid = cam_grid(self.model, spec.hw, spec.input_size[0])
        if not can_localise(self._cam_grid):
            raise CamResolutionError(
                f"model {self.model_ref}: {cam_grid_note(self._cam_grid, spec.hw)}"
            )
        return spec

    def explain(
        self,
        image: Any,
        method: str = "gradcam",
        target_class: int | str | None = None,
        tta: str = "none",
        **cam_options: Any,
    ):
        """A CAM for one image at the image's resolution (``explain.CamResult``).

        Args:
            image: Path, ``LoadedImage`` or array.
            method: A ``explain.CAM_METHODS`` name, or for a patch MIL model "patch_map" /
                "attention_map" (``inference.mil_maps``).
            target_class: Index or name; None explains the predicted class.
            tta: CAM test-time augmentation ("none", "flips", "d4").
            **cam_options: ``batch_size`` / ``top_k`` for Score-CAM.
        """
        from napari_pathreview.explain.cams import CamResult, compute_cam, resolve_method
        from napari_pathreview.inference.mil_maps import MAP_KINDS, explain_mil

        if method in MAP_KINDS:  # a patch MIL model's own maps: no gradient, no target class
            explained = explain_mil(self, image)
            label = explained.label
            return CamResult(explained.map(method), method, self.classes.index(label), label)
        cam_spec = self.require_cam_grid()
        decoded = decode(image, min_side=min(self.spec.hw))
        rgb = decoded.rgb
        um = [decoded.um_per_px]
        index = self.target_index(target_class, self.probabilities([rgb], um)[0])
        with torch.inference_mode():
            x = self.prepare([rgb], cam_spec, um)
        cam = compute_cam(self.model, x, method, target_class=index, tta=tta, **cam_options)[0]
        full = self.cam_to_image(cam, rgb, cam_spec, decoded.um_per_px)
        return CamResult(
            np.clip(full, 0.0, 1.0).astype(np.float32),
            resolve_method(method),
            index,
            self.classes[index],
        )
