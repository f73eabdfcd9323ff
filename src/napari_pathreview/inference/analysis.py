"""The analysis pipeline as a plain generator: load a model, predict, explain.

One function behind three entry points (Python, CLI/demo, widget). No Qt here: the widget
wraps :func:`analyse` in a napari ``thread_worker`` and the demo's headless mode iterates it
directly, so both show exactly the same numbers. It yields
:class:`AnalysisProgress` while it works and one :class:`AnalysisResult` at the end, and
stops at the next step boundary (or inside the predictor's own loop) once ``cancel`` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from napari_pathreview.errors import (  # noqa: F401  (DeviceUnavailableError: re-exported)
    DeviceUnavailableError,
    InvalidInputError,
    PathReviewError,
)
from napari_pathreview.inference.device import resolve_device
from napari_pathreview.inference.large_images import needs_tiling
from napari_pathreview.inference.slide_grid import SlideSettings
from napari_pathreview.inference.two_film import check_two_film_model, decide_pair


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
        slide: how large images are tiled, the settings ``pathreview predict-slides`` builds
            from its flags: the mode ("matched" at the model card's µm/px, the image needing
            a physical scale, or "preview": a coarse level, fast, not the resolution the model
            learned), the model's µm/px for a card without one, the least tissue fraction of
            a tile and whether glass tiles are classified too.
    """

    model_ref: str
    device: str = "auto"
    stain: str | None = None
    qc: bool = True
    tta: str = "none"
    cam_method: str | None = "gradcam"
    target_class: str | None = None
    tiled: bool | None = None
    slide: SlideSettings = field(default_factory=SlideSettings)

    @property
    def slide_mode(self) -> str:
        return self.slide.mode

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
            "slide_mode": self.slide_mode,
            "slide_settings": chosen_slide_settings(self.slide),
        }


def chosen_slide_settings(settings: SlideSettings) -> dict[str, Any] | None:
    """The result-changing slide settings besides the mode that differ from the defaults;
    None when all are the defaults, so a prediction recorded before they could be chosen
    still matches one made with them (``prediction_settings``)."""
    default = SlideSettings(mode=settings.mode).cache_fields()
    chosen = {
        key: value
        for key, value in settings.cache_fields().items()
        if key != "mode" and value != default[key]
    }
    return chosen or None


#: The recorded settings that change a prediction's probabilities (and so its decision): the
#: views averaged (TTA), the stain normalisation (method, or a user target's fitted state) and
#: how a large image is tiled. Device, QC (it only flags), CAM method and target class do not.
PREDICTION_SETTINGS = ("tta", "stain", "tiled", "slide_mode", "slide_settings")


def prediction_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The part of recorded ``settings`` (:meth:`AnalysisRequest.settings`) that makes the
    prediction: two runs agreeing on it give the same probabilities, whatever they explained."""
    return {key: settings.get(key) for key in PREDICTION_SETTINGS}


@dataclass(frozen=True)
class AnalysisProgress:
    """One step of a run: what is happening and how far along (0..1)."""

    step: str
    fraction: float


@dataclass(frozen=True)
class AnalysisResult:
    """A finished run: the card used, the prediction, the CAM and (large images) tile maps.

    Attributes:
        cam_scale: factor from CAM pixels to level-0 image pixels (1 for an image explained
            whole; a tiled image's CAM is a map a few pixels per heatmap cell, see
            ``inference.slide_cam``).
        cam_note: why a CAM that was asked for is missing (the model's CAM layer is too
            coarse at its input size: ``explain.cam_grid``), else "".
    """

    request: AnalysisRequest
    card: Any
    prediction: Any
    cam: Any | None = None
    cam_scale: float = 1.0
    tiled: Any | None = None
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    two_film: Any | None = None  # inference.two_film.TwoFilmDecision against the other film
    cam_note: str = ""

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
            **({"two_film": asdict(self.two_film)} if self.two_film is not None else {}),
        }


def check_device(device: str) -> None:
    """Refuse a device this machine lacks before loading anything (DeviceUnavailableError)."""
    resolve_device(device)


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


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise AnalysisCancelled("analysis cancelled; nothing was added.")


def analyse(
    request: AnalysisRequest,
    image: np.ndarray | Sequence[Any],
    modality: str | None = None,
    cancel: threading.Event | None = None,
    load_model: Callable[[str, str], tuple[Any, Any]] = default_loader,
    um_per_px: float | None = None,
    other_film: np.ndarray | None = None,
    other_name: str = "",
    other_um_per_px: float | None = None,
) -> Iterator[Any]:
    """Classify and explain one image, yielding progress and finally an :class:`AnalysisResult`.

    Args:
        request: the settings gathered by the widget.
        image: an array, or a list of pyramid levels (level 0 first).
        modality: the layer's modality, checked against the model card.
        cancel: set it to stop; the generator then raises :class:`AnalysisCancelled`.
        load_model: ``(model_ref, device) -> (model, card)``.
        um_per_px: level-0 pixel size of the image in µm (from the file: a mammogram's mm
            too), None if unknown; a known one resamples the image to the card's resolution,
            as ``pathreview predict`` does for the file.
        other_film: the same woman's other mammogram: it is classified too and the image is
            decided against it with the card's two-film calibration (``inference.two_film``);
            a card without one is refused before any prediction.
        other_name: what the result calls the other film (its layer name).
        other_um_per_px: the other film's pixel size in µm, None if unknown.

    Large images also yield the slide engine's ``SlideStart`` and ``SlideBatch`` events as
    they come, so a viewer can show the heatmap filling in (``inference.heatmap``).
    """
    from napari_pathreview.inference import Predictor

    start = time.perf_counter()
    check_device(request.device)
    levels = _levels(image)
    yield AnalysisProgress("loading model", 0.05)
    model, card = load_model(request.model_ref, request.device)
    check_modality(card, modality)
    if other_film is not None:
        check_two_film_model(card)
    _check_cancel(cancel)
    predictor = Predictor(
        model, card, device=request.device, stain=request.stain, tta=request.tta, qc=request.qc
    )
    target = _target(card, request.target_class)
    if needs_tiling(levels, modality, request.tiled):
        steps = _tiled_steps(predictor, request, levels, target, cancel, um_per_px)
    else:
        image = sized_image(levels[0], um_per_px, modality)
        steps = _whole_steps(predictor, request, image, target, cancel)
    prediction = cam = tiled = None
    cam_note = ""
    for item in steps:
        if isinstance(item, tuple):
            prediction, cam, tiled, cam_note = item
        else:
            yield item
    _check_cancel(cancel)
    two_film = None
    if other_film is not None:
        label = f"classifying the other film ({other_name})"
        yield AnalysisProgress(label, 0.96)
        other_image = sized_image(other_film, other_um_per_px, modality)
        other = yield from _classify_steps(predictor, other_image, cancel, label, (0.96, 0.03))
        two_film = decide_pair(card, prediction.probabilities, other.probabilities, other_name)
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
        two_film=two_film,
        cam_note=cam_note,
    )


def sized_image(image: Any, um_per_px: float | None, modality: str | None) -> Any:
    """A whole image as the predictor takes it: an array, or with a known pixel size a
    ``LoadedImage`` carrying it, so it is resampled to the card's resolution like its file.

    ``modality`` is the layer's (a film saved as RGB is a mammogram); guessed from the
    array's channels only when not given.
    """
    from napari_pathreview.io import LoadedImage
    from napari_pathreview.modality import HISTOLOGY, MAMMOGRAM

    array = np.asarray(image)
    if not um_per_px:
        return array
    kind = modality or (HISTOLOGY if array.ndim == 3 else MAMMOGRAM)
    return LoadedImage(array, [array], kind, um_per_px=float(um_per_px))


def _classify_steps(
    predictor: Any, image: Any, cancel: Any, label: str, span: tuple[float, float]
) -> Generator[AnalysisProgress, None, Any]:
    """Classify one whole image, relaying progress over ``span`` (start, width); its prediction."""
    prediction = None
    for item in predictor.iter_predict([image], cancel=cancel):
        if hasattr(item, "probabilities"):
            prediction = item
        else:
            yield AnalysisProgress(label, span[0] + span[1] * _fraction(item))
    _check_cancel(cancel)
    if prediction is None:
        raise AnalysisCancelled("analysis cancelled; nothing was added.")
    return prediction


def _whole_steps(
    predictor: Any,
    request: AnalysisRequest,
    image: Any,
    target: str | None,
    cancel: threading.Event | None,
) -> Iterator[Any]:
    """Predict and explain an image small enough to classify whole; a CAM the model's CAM
    layer is too coarse for is left out, with the reason, and the prediction kept."""
    from napari_pathreview.explain.cam_grid import CamResolutionError

    prediction = yield from _classify_steps(predictor, image, cancel, "classifying", (0.1, 0.4))
    cam, note = None, ""
    if request.cam_method:
        yield AnalysisProgress(f"explaining ({request.cam_method})", 0.6)
        try:
            cam = yield from _explain_steps(predictor, image, request.cam_method, target, cancel)
        except CamResolutionError as error:
            note = str(error)
    yield prediction, cam, None, note


def _explain_steps(
    predictor: Any, image: Any, method: str, target: str | None, cancel: Any
) -> Generator[AnalysisProgress, None, Any]:
    """Explain in a helper thread, relaying Score-CAM's per-batch progress (0.6 → 0.95).

    A Score-CAM is hundreds of masked forwards inside one call; run inline, the progress bar
    would sit still and Cancel would wait for the whole call. The CAM checks ``cancel``
    before every masked batch, so Cancel takes effect within one batch.
    """
    import queue

    updates: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["cam"] = predictor.explain(
                image,
                method=method,
                target_class=target,
                cancel=cancel,
                progress=lambda done, total: updates.put((done, total)),
            )
        except BaseException as error:  # noqa: BLE001 - re-raised in the generator's thread
            outcome["error"] = error

    thread = threading.Thread(target=work, name="pathreview-explain", daemon=True)
    thread.start()
    while thread.is_alive() or not updates.empty():
        try:
            done, total = updates.get(timeout=0.1)
        except queue.Empty:
            continue
        yield AnalysisProgress(f"explaining ({method}) {done}/{total}", 0.6 + 0.35 * done / total)
    thread.join()
    error = outcome.get("error")
    if isinstance(error, InterruptedError):
        raise AnalysisCancelled("analysis cancelled; nothing was added.") from error
    if error is not None:
        raise error
    return outcome["cam"]


def _tiled_steps(
    predictor: Any,
    request: AnalysisRequest,
    levels: Sequence[Any],
    target: str | None,
    cancel: threading.Event | None,
    um_per_px: float | None = None,
) -> Iterator[Any]:
    """Tile a large or multiscale image with the slide engine, then a stitched CAM (both cached).

    The CAM is explained on the heatmap's own plan (matched mode: the model's µm/px, read
    from the nearest finer level) and blended into a map a few pixels per heatmap cell
    (``inference.slide_cam``), so it shows what the model saw at the resolution it learned.
    The steps are ``inference.large_images``'s, which ``pathreview predict`` runs too.
    """
    from napari_pathreview.inference.cache import SlideCache
    from napari_pathreview.inference.large_images import iter_classify_tiles, iter_explain_tiles
    from napari_pathreview.inference.layer_slide import LevelsSlide
    from napari_pathreview.inference.mil_maps import MAP_KINDS

    settings = request.slide
    source = LevelsSlide(levels, um_per_px)
    yield AnalysisProgress(f"classifying tiles ({request.slide_mode})", 0.1)
    cache = SlideCache()
    steps = iter_classify_tiles(predictor, source, settings, cancel, cache)
    prediction, tiled = yield from _slide_stage(steps)
    cam = None
    if request.cam_method:
        if request.cam_method not in MAP_KINDS:
            where = f"{tiled.grid.um_per_px:.3g} µm/px" if tiled.grid.um_per_px else "preview"
            yield AnalysisProgress(f"explaining tiles ({request.cam_method}, {where})", 0.7)
        label = target or prediction.label
        steps = iter_explain_tiles(
            predictor, source, tiled, settings, request.cam_method, label, cancel, cache
        )
        cam = yield from _tiled_stage(steps, 0.7, 0.95)
    yield prediction, cam, tiled, ""


def _slide_stage(steps: Generator[Any, None, Any]) -> Generator[Any, None, Any]:
    """Relay the slide engine's events (and progress in [0.1, 0.7]); returns what ``steps``
    returns."""
    from napari_pathreview.inference.progress import Progress
    from napari_pathreview.inference.slides import SlideBatch

    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, Progress) and item.cancelled:
            raise AnalysisCancelled("analysis cancelled; nothing was added.")
        yield item
        if isinstance(item, SlideBatch):
            fraction = item.done / item.total if item.total else 1.0
            yield AnalysisProgress(f"classifying tiles: {item.message}", 0.1 + 0.6 * fraction)


def _tiled_stage(
    steps: Generator[Any, None, Any], low: float, high: float
) -> Generator[AnalysisProgress, None, Any]:
    """Relay a tiled generator's progress into [low, high]; returns its result (cancel raises)."""
    from napari_pathreview.inference.progress import Progress

    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value
        if not isinstance(item, Progress):
            continue
        if item.cancelled:
            raise AnalysisCancelled("analysis cancelled; nothing was added.")
        fraction = item.done / item.total if item.total else 1.0
        yield AnalysisProgress(item.message or "tiles", low + (high - low) * fraction)


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
