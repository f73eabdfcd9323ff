"""The Analyze widget's job as a plain generator: load a model, predict, explain.

No Qt here: the widget wraps :func:`analyse` in a napari ``thread_worker`` and the demo's
headless mode iterates it directly, so both show exactly the same numbers. It yields
:class:`AnalysisProgress` while it works and one :class:`AnalysisResult` at the end, and
stops at the next step boundary (or inside the predictor's own loop) once ``cancel`` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError, PathReviewError

#: Histology images whose longer side exceeds this many pixels are classified tile by tile.
TILE_ABOVE_PIXELS = 1600
#: Large images are tiled on the finest pyramid level needing at most this many tiles.
MAX_TILES = 100


class DeviceUnavailableError(PathReviewError):
    """The chosen device (CUDA, MPS) does not exist on this machine."""


class ModalityMismatchError(InvalidInputError):
    """A histology model was chosen for a mammogram, or the other way round."""


class AnalysisCancelled(PathReviewError):
    """The user pressed Cancel; nothing was added to the viewer."""


@dataclass(frozen=True)
class AnalysisRequest:
    """Everything the Analyze widget gathers before it starts a run.

    Attributes:
        model_ref: registry reference ``name@version``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        stain: stain method, or None for the model card's own.
        qc: whether to run the blur/tissue quality checks.
        tta: test-time augmentation mode (``none``, ``flips``, ``d4``).
        cam_method: CAM method name, or None for no CAM.
        target_class: class to explain, or None for the predicted one.
        tiled: force tiling on/off; None decides from the image size.
    """

    model_ref: str
    device: str = "auto"
    stain: str | None = None
    qc: bool = True
    tta: str = "none"
    cam_method: str | None = "gradcam"
    target_class: str | None = None
    tiled: bool | None = None

    def settings(self) -> dict[str, Any]:
        """The settings recorded with a prediction in the review store."""
        return {
            "device": self.device,
            "stain": self.stain or "card",
            "qc": self.qc,
            "tta": self.tta,
            "cam_method": self.cam_method,
            "target_class": self.target_class,
            "tiled": self.tiled,
        }


@dataclass(frozen=True)
class AnalysisProgress:
    """One step of a run: what is happening and how far along (0..1)."""

    step: str
    fraction: float


@dataclass(frozen=True)
class AnalysisResult:
    """A finished run: the card used, the prediction, the CAM and (large images) tile maps.

    Attributes:
        cam_scale: factor from CAM pixels to level-0 image pixels (1 unless the CAM was
            computed on a coarser pyramid level).
    """

    request: AnalysisRequest
    card: Any
    prediction: Any
    cam: Any | None = None
    cam_scale: float = 1.0
    tiled: Any | None = None
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def model_name(self) -> str:
        return str(self.card.name)

    @property
    def model_version(self) -> str:
        return str(self.card.version)

    @property
    def probabilities(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in self.prediction.probabilities.items()}

    def record(self) -> dict[str, Any]:
        """A JSON-able summary kept in the image layer's metadata for the Review widget."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "classes": list(self.card.classes),
            "probabilities": self.probabilities,
            "label": str(self.prediction.label),
            "threshold": self.prediction.threshold,
            "settings": self.request.settings(),
        }


def check_device(device: str) -> None:
    """Refuse a device this machine lacks, with the choice that works instead."""
    if device not in ("auto", "cpu", "cuda", "mps"):
        raise DeviceUnavailableError(f"unknown device {device!r}; choose auto, cpu or cuda.")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "CUDA is not available on this machine (no NVIDIA GPU or a CPU-only torch); "
                "choose device 'auto' or 'cpu'."
            )
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise DeviceUnavailableError("MPS is not available here; choose 'auto' or 'cpu'.")


def check_modality(card: Any, modality: str | None) -> None:
    """Refuse a model trained on the other modality."""
    if modality and card.modality and card.modality != modality:
        raise ModalityMismatchError(
            f"model {card.name}@{card.version} was trained on {card.modality} images but the "
            f"layer is a {modality}; pick a {modality} model "
            "(or train one with `pathreview train`)."
        )


def default_loader(model_ref: str, device: str) -> tuple[Any, Any]:
    """Load ``name@version`` from the registry on the CPU; returns (model, card)."""
    from napari_pathreview.registry import ModelRegistry, parse_model_ref

    name, version = parse_model_ref(model_ref)
    registry = ModelRegistry()
    card = registry.card(name, version)
    model = registry.load(name, card.version, device="cpu")
    return model, card


def _levels(image: np.ndarray | Sequence[Any]) -> list[Any]:
    if isinstance(image, (list, tuple)):
        if not image:
            raise InvalidInputError("the image layer holds no data.")
        return list(image)
    return [image]


def needs_tiling(levels: Sequence[Any], modality: str | None, tiled: bool | None) -> bool:
    """Tile multiscale images and large histology; whole mammograms are classified whole."""
    if tiled is not None:
        return tiled
    if modality == "mammogram":
        return False
    shape = levels[0].shape
    return len(levels) > 1 or max(shape[0], shape[1]) > TILE_ABOVE_PIXELS


def tile_level(levels: Sequence[Any], tile_side: int, overlap: float = 0.25) -> int:
    """The finest pyramid level tiled with at most :data:`MAX_TILES` tiles of the model's size."""
    stride = max(1.0, tile_side * (1.0 - overlap))
    for index, level in enumerate(levels):
        rows, cols = level.shape[0], level.shape[1]
        if (rows / stride) * (cols / stride) <= MAX_TILES:
            return index
    return len(levels) - 1


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise AnalysisCancelled("analysis cancelled; nothing was added.")


def analyse(
    request: AnalysisRequest,
    image: np.ndarray | Sequence[Any],
    modality: str | None = None,
    cancel: threading.Event | None = None,
    load_model: Callable[[str, str], tuple[Any, Any]] = default_loader,
) -> Iterator[AnalysisProgress | AnalysisResult]:
    """Classify and explain one image, yielding progress and finally an :class:`AnalysisResult`.

    Args:
        request: the settings gathered by the widget.
        image: an array, or a list of pyramid levels (level 0 first).
        modality: the layer's modality, checked against the model card.
        cancel: set it to stop; the generator then raises :class:`AnalysisCancelled`.
        load_model: ``(model_ref, device) -> (model, card)``.
    """
    from napari_pathreview.inference import Predictor

    start = time.perf_counter()
    check_device(request.device)
    levels = _levels(image)
    yield AnalysisProgress("loading model", 0.05)
    model, card = load_model(request.model_ref, request.device)
    check_modality(card, modality)
    _check_cancel(cancel)
    predictor = Predictor(
        model, card, device=request.device, stain=request.stain, tta=request.tta, qc=request.qc
    )
    target = _target(card, request.target_class)
    if needs_tiling(levels, modality, request.tiled):
        steps = _tiled_steps(predictor, request, levels, target, cancel)
    else:
        steps = _whole_steps(predictor, request, levels[0], target, cancel)
    prediction = cam = tiled = None
    for item in steps:
        if isinstance(item, AnalysisProgress):
            yield item
        else:
            prediction, cam, tiled = item
    _check_cancel(cancel)
    qc = getattr(prediction, "qc", None)
    warnings = tuple(qc.reasons) if qc is not None and not qc.passed else ()
    yield AnalysisProgress("done", 1.0)
    yield AnalysisResult(
        request=request,
        card=card,
        prediction=prediction,
        cam=cam,
        cam_scale=1.0 if cam is None else float(levels[0].shape[0]) / float(cam.cam.shape[0]),
        tiled=tiled,
        seconds=time.perf_counter() - start,
        warnings=warnings,
    )


def _whole_steps(
    predictor: Any,
    request: AnalysisRequest,
    image: Any,
    target: str | None,
    cancel: threading.Event | None,
) -> Iterator[Any]:
    """Predict and explain an image small enough to classify whole."""
    base = np.asarray(image)
    prediction = None
    for item in predictor.iter_predict([base], cancel=cancel):
        if hasattr(item, "probabilities"):
            prediction = item
        else:
            yield AnalysisProgress("classifying", 0.1 + 0.4 * _fraction(item))
    _check_cancel(cancel)
    if prediction is None:
        raise AnalysisCancelled("analysis cancelled; nothing was added.")
    cam = None
    if request.cam_method:
        yield AnalysisProgress(f"explaining ({request.cam_method})", 0.6)
        cam = predictor.explain(base, method=request.cam_method, target_class=target)
    yield prediction, cam, None


def _tiled_steps(
    predictor: Any,
    request: AnalysisRequest,
    levels: Sequence[Any],
    target: str | None,
    cancel: threading.Event | None,
) -> Iterator[Any]:
    """Tile a large or multiscale image: probability maps, aggregate prediction, stitched CAM."""
    from napari_pathreview.inference import explain_tiled

    side = int(predictor.card.input_size[-1]) if predictor.card.input_size else 224
    level = tile_level(levels, side)
    source = list(levels) if len(levels) > 1 else levels[0]
    yield AnalysisProgress(f"classifying tiles (level {level})", 0.1)
    try:
        tiled = predictor.predict_tiled(source, level=level, cancel=cancel)
    except InterruptedError as error:
        raise AnalysisCancelled("analysis cancelled; nothing was added.") from error
    _check_cancel(cancel)
    prediction = _prediction_from_tiled(predictor, tiled)
    cam = None
    if request.cam_method:
        yield AnalysisProgress(f"explaining tiles ({request.cam_method})", 0.55)
        try:
            cam = explain_tiled(
                predictor,
                source,
                method=request.cam_method,
                target_class=target or prediction.label,
                level=level,
                cancel=cancel,
            )
        except InterruptedError as error:
            raise AnalysisCancelled("analysis cancelled; nothing was added.") from error
    yield prediction, cam, tiled


def _fraction(progress: Any) -> float:
    for attr in ("fraction",):
        value = getattr(progress, attr, None)
        if value is not None:
            return float(value)
    done, total = getattr(progress, "done", 0), getattr(progress, "total", 1) or 1
    return float(done) / float(total)


def _target(card: Any, target_class: str | None) -> str | None:
    if target_class is None or target_class == "":
        return None
    classes = list(card.classes)
    if target_class not in classes:
        raise InvalidInputError(f"class {target_class!r} is not one of the model's {classes}.")
    return target_class


def _prediction_from_tiled(predictor: Any, tiled: Any) -> Any:
    """The image-level prediction of a tiled run: mean over tissue tiles, then the card's rule."""
    mean = tiled.aggregate.get("mean") or {}
    if not mean:
        raise InvalidInputError(
            "no tissue tile found in the image; check the image or untick tissue skipping."
        )
    probs = np.array([float(mean[name]) for name in predictor.classes], dtype=np.float64)
    return predictor.to_prediction(probs)
