"""CAMs over large images, tile by tile: each tile's CAM from its one forward, weighted by its
probability of the target class and Hann-blended into one map (``tiling`` walks the tiles)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from napari_pathreview.inference.progress import Progress
from napari_pathreview.inference.tiling import (
    TiledCam,
    _batches,
    _geometry,
    _levels,
    _tissue_tiles,
    hann_window,
    last_result,
    tile_origins,
)

__all__ = ["explain_tiled", "iter_explain_tiled", "tile_cams", "tile_class_cams"]


def _tile_target(
    predictor: Any, tiles: Iterator[tuple[int, int, np.ndarray | None]], target_class: Any
) -> int:
    """The class to explain: the given one, else the decision on the mean tile probability
    (a pass classifying every tile: :func:`iter_explain_tiled` avoids it where it can)."""
    if target_class is not None:
        return predictor.target_index(target_class, np.full(len(predictor.classes), 1.0))
    total = np.zeros(len(predictor.classes), np.float64)
    n = 0
    for batch, _ in _batches(tiles, predictor.batch_size):
        if batch:
            total += predictor.probabilities([rgb for _, _, rgb in batch]).sum(axis=0)
            n += len(batch)
    return _decided(predictor, total, n)


def _decided(predictor: Any, total: np.ndarray, n: int) -> int:
    """The decision on the mean of ``n`` tile probabilities summing to ``total``."""
    mean = total / n if n else np.full(len(predictor.classes), 1.0)
    return predictor.target_index(None, mean)


def tile_cams(
    predictor: Any,
    x: Any,
    method: str,
    index: int,
    classify: Callable[[], np.ndarray],
    options: Mapping[str, Any],
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CAMs of a prepared tile batch and each tile's P(target), one forward per tile.

    P(target) is read from the logits of the CAM's own forward when it ran the predictor's
    views (CAM TTA = the predictor's TTA: the same input, the same views), so the tiles are
    not run through the model a second time. Otherwise (other views, or a method that keeps
    no logits) ``classify()`` gives the tiles' N×K probabilities as the heatmap classifies
    them. Both tiled CAMs (this module's and ``slide_cam``'s) weight their tiles by this.

    Args:
        predictor: An ``inference.Predictor``.
        x: The tiles as the model sees them (``Predictor.prepare``).
        method: CAM method name.
        index: Class explained.
        classify: Computes the tiles' N×K probabilities when the CAM's logits cannot serve.
        options: ``explain.explain_batch`` options (``tta``, Score-CAM's ``batch_size`` /
            ``top_k``).
        cancel: Event a CAM method checks (``InterruptedError`` once set).

    Returns:
        (N×h×w maps in [0, 1] at the model's input size, N probabilities of class ``index``).
    """
    maps, probs = tile_class_cams(predictor, x, method, [index], classify, options, cancel)
    return maps[0], probs[:, 0]


def tile_class_cams(
    predictor: Any,
    x: Any,
    method: str,
    classes: Sequence[int],
    classify: Callable[[], np.ndarray],
    options: Mapping[str, Any],
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tile_cams` of each of ``classes`` from one forward of the batch
    (``explain.explain_classes``): (C×N×h×w maps, N×C probabilities of those classes)."""
    from napari_pathreview.explain.cams import explain_classes

    classes = [int(c) for c in classes]
    maps, logits = explain_classes(predictor.model, x, method, classes, cancel=cancel, **options)
    if options.get("tta", "none") == predictor.tta and logits is not None:
        probs = predictor.probabilities_of_logits(logits).numpy()
    else:
        probs = classify()
    return maps, np.asarray(probs)[:, classes]


def _decides_in_cam_pass(predictor: Any, method: str, options: Mapping[str, Any]) -> bool:
    """Whether the class to explain can be decided in the CAM pass itself (every class's
    CAM from each tile's one forward, the class picked at the end): the CAM's forward
    classifies as the predictor does (its views), and another class costs the method a
    backward, not forwards (Score-CAM would repeat its masked forwards per class)."""
    from napari_pathreview.explain.cams import resolve_method

    return options.get("tta", "none") == predictor.tta and resolve_method(method) != "scorecam"


def iter_explain_tiled(
    predictor: Any,
    image_or_levels: Any,
    method: str = "gradcam",
    target_class: int | str | None = None,
    level: int = 0,
    tile_size: int | None = None,
    overlap: float = 0.25,
    skip_background: bool | None = None,
    min_tissue: float = 0.1,
    cancel: threading.Event | None = None,
    explainer: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]] | None = None,
    **cam_options: Any,
) -> Iterator[Progress | TiledCam]:
    """A CAM over a large image, stitched at the chosen level's resolution, tile batch by batch.

    Tiles stream from the image (never all held at once). Each tissue tile's CAM (min–max
    scaled within the tile) is weighted by the tile's probability of the target class, read
    from the CAM's own forward (:func:`tile_cams`: one forward per tile), so tiles without
    evidence do not light up, and blended with a :func:`hann_window` so overlapping tiles
    leave no seams. The target is the given class, else the decision on the mean tile
    probabilities: taken from the same forwards (every class's CAM is stitched, one map per
    class, and the decided one kept), so still one forward per tile; a pass classifying the
    tiles first only where those forwards cannot decide (CAM TTA other than the predictor's,
    Score-CAM, an ``explainer``). Same progress/cancel protocol as :func:`iter_predict_tiled`.

    Args:
        explainer: ``tiles -> (N×h×w maps, N P(target))`` of a batch of RGB tiles; default
            :func:`tile_cams` on the tiles prepared with the card's spec.
        **cam_options: ``explain.explain_batch`` options (``tta``, Score-CAM's).
    """
    from napari_pathreview.explain.cams import resolve_method

    levels = _levels(image_or_levels)
    data, tile, stride, down = _geometry(predictor, levels, level, tile_size, overlap)
    skip = predictor.card.modality == "histology" if skip_background is None else skip_background

    def tiles() -> Iterator[tuple[int, int, np.ndarray | None]]:
        return _tissue_tiles(data, tile, stride, skip, min_tissue, 220)

    index = None  # decided from the CAM pass's own forwards, where they can decide
    if (
        target_class is not None
        or explainer is not None
        or not _decides_in_cam_pass(predictor, method, cam_options)
    ):
        index = _tile_target(predictor, tiles(), target_class)
    classes = list(range(len(predictor.classes))) if index is None else [index]
    if explainer is not None:
        explain = _one_class(explainer)
    else:
        explain = _tile_explainer(predictor, method, classes, cam_options)
    stitched = yield from _stitch(
        predictor, data, tiles(), tile, stride, explain, len(classes), cancel
    )
    if stitched is None:
        return
    cams, total, n = stitched
    if index is None:  # every class was explained: keep the decided one's map
        index = _decided(predictor, total, n)
    cam = cams[classes.index(index)]
    yield TiledCam(cam, resolve_method(method), index, predictor.classes[index], down, level)


def _stitch(
    predictor: Any,
    data: Any,
    tiles: Iterator[tuple[int, int, np.ndarray | None]],
    tile: int,
    stride: int,
    explain: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]],
    n_maps: int,
    cancel: threading.Event | None,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, int] | None]:
    """Stitch ``explain``'s C×N maps of every tissue tile batch into C maps of ``data``'s size;
    returns (the C maps, the sum of the tiles' N×C weights, the tile count), None once
    cancelled."""
    cams = np.zeros((n_maps, *data.shape[:2]), np.float32)
    weight = np.zeros(data.shape[:2], np.float32)
    total = np.zeros(n_maps, np.float64)
    n = 0
    n_grid = len(tile_origins(data.shape[0], tile, stride)) * len(
        tile_origins(data.shape[1], tile, stride)
    )
    done = 0
    for batch, walked in _batches(tiles, predictor.batch_size):
        if cancel is not None and cancel.is_set():
            yield Progress(done, n_grid, "cancelled", cancelled=True)
            return None
        yield Progress(done, n_grid, f"explaining tiles {done + 1}-{done + walked} of {n_grid}")
        done += walked
        if not batch:
            continue
        maps, probs = explain([rgb for _, _, rgb in batch])
        total += np.asarray(probs, np.float64).sum(axis=0)
        n += len(batch)
        for i, (r0, c0, rgb) in enumerate(batch):
            h, w = rgb.shape[:2]
            window = hann_window(h, w)
            for c in range(n_maps):
                resized = predictor.cam_to_image(maps[c][i], rgb)
                cams[c, r0 : r0 + h, c0 : c0 + w] += resized * float(probs[i][c]) * window
            weight[r0 : r0 + h, c0 : c0 + w] += window
    yield Progress(n_grid, n_grid, "done")
    stitched = np.where(weight > 0, cams / np.maximum(weight, 1e-12), 0.0).astype(np.float32)
    return stitched, total, n


def _one_class(
    explainer: Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]],
) -> Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """A one-class ``explainer`` (N maps, N weights) as :func:`_stitch` takes it (1×N, N×1)."""

    def explain(rgbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        maps, probs = explainer(rgbs)
        return np.asarray(maps)[None], np.asarray(probs)[:, None]

    return explain


def _tile_explainer(
    predictor: Any, method: str, classes: list[int], options: Mapping[str, Any]
) -> Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """:func:`tile_class_cams` of RGB tiles prepared with the card's spec (resized to the
    model's input when the tiles are another size), classified the same way when it must."""

    def explain(rgbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = predictor.prepare(rgbs).detach().clone()
        classify = partial(predictor.probabilities, rgbs)
        return tile_class_cams(predictor, x, method, classes, classify, options)

    return explain


def explain_tiled(
    predictor: Any, image_or_levels: Any, method: str = "gradcam", **kwargs: Any
) -> TiledCam | None:
    """:func:`iter_explain_tiled` run to the end (None only if a ``cancel`` event was set)."""
    return last_result(iter_explain_tiled(predictor, image_or_levels, method, **kwargs))
