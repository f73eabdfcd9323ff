"""Sliding-window inference over large images and slide pyramids (their CAMs: ``tiled_cams``).

Tiles are read one by one from the chosen level (numpy, dask or zarr arrays alike: only
``level[r0:r1, c0:c1]`` is materialised, never the whole level), background tiles are skipped
with ``stain.tissue_mask``, and tissue tiles are batched through the predictor. Probability maps
come back on a coarse grid with the scale/translate that places them on the image in napari.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError
from napari_pathreview.inference.progress import Progress
from napari_pathreview.preprocessing import check_tileable

__all__ = [
    "TiledCam",
    "TiledPrediction",
    "hann_window",
    "iter_predict_tiled",
    "last_result",
    "predict_tiled",
    "tile_origins",
]


@dataclass(frozen=True)
class TiledPrediction:
    """Per-class probability maps of a large image and image-level aggregates.

    Attributes:
        prob_maps: float32 C×h×w, one cell per ``cell`` pixels of the chosen level; cells no
            tissue tile covers are 0 (see ``coverage``).
        coverage: bool h×w, True where at least one tissue tile contributed.
        classes: Class names, in map order.
        scale: (row, col) size of one map cell in level-0 pixels (a napari layer's ``scale``).
        translate: (row, col) centre of cell (0, 0) in level-0 pixels (napari ``translate``).
        aggregate: ``{"mean"|"max"|"topk_mean": {class: probability}}`` over tissue tiles.
        level: Pyramid level tiled.
        tile_size: Tile edge in level pixels.
        stride: Step between tiles in level pixels.
        n_tiles: Tiles in the grid.
        n_skipped: Background tiles skipped.
        tile_probabilities: float32 T×C of the tissue tiles, and their origins (T×2, level pixels).
    """

    prob_maps: np.ndarray
    coverage: np.ndarray
    classes: tuple[str, ...]
    scale: tuple[float, float]
    translate: tuple[float, float]
    aggregate: dict[str, dict[str, float]]
    level: int
    tile_size: int
    stride: int
    n_tiles: int
    n_skipped: int
    tile_probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    tile_origins: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2), int))


@dataclass(frozen=True)
class TiledCam:
    """A CAM stitched over a large image at the chosen level's full resolution."""

    cam: np.ndarray
    method: str
    target_class: int
    target_label: str
    scale: tuple[float, float]
    level: int


def tile_origins(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, the last tile flush with the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def _levels(image_or_levels: Any) -> list[Any]:
    if hasattr(image_or_levels, "levels") and hasattr(image_or_levels, "modality"):
        return list(image_or_levels.levels)
    if isinstance(image_or_levels, list | tuple):
        return list(image_or_levels)
    return [image_or_levels]


def _geometry(
    predictor: Any, levels: list[Any], level: int, tile_size: int | None, overlap: float
) -> tuple[Any, int, int, tuple[float, float]]:
    if not 0 <= level < len(levels):
        raise InvalidInputError(
            f"level {level} does not exist; the image has {len(levels)} level(s)"
        )
    if not 0.0 <= overlap < 1.0:
        raise InvalidInputError(f"overlap must be in [0, 1), got {overlap}")
    check_tileable(predictor.spec, predictor.model_ref)
    data = levels[level]
    tile = int(tile_size or min(predictor.spec.hw))
    if tile < 8:
        raise InvalidInputError(f"tile_size must be at least 8 pixels, got {tile}")
    stride = max(1, int(round(tile * (1.0 - overlap))))
    base = levels[0].shape
    downsample = (base[0] / data.shape[0], base[1] / data.shape[1])
    return data, tile, stride, downsample


def _read(data: Any, r0: int, c0: int, tile: int) -> np.ndarray:
    from napari_pathreview.io import to_rgb_uint8

    return to_rgb_uint8(np.asarray(data[r0 : r0 + tile, c0 : c0 + tile]))


def _is_tissue(rgb: np.ndarray, skip_background: bool, min_tissue: float, threshold: int) -> bool:
    if not skip_background:
        return True
    from napari_pathreview.stain import tissue_mask

    return float(tissue_mask(rgb, background_threshold=threshold).mean()) >= min_tissue


def _tissue_tiles(
    data: Any, tile: int, stride: int, skip_background: bool, min_tissue: float, threshold: int
) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """Every grid origin with its tile, or None for a skipped background tile."""
    for r0 in tile_origins(data.shape[0], tile, stride):
        for c0 in tile_origins(data.shape[1], tile, stride):
            rgb = _read(data, r0, c0, tile)
            yield r0, c0, (rgb if _is_tissue(rgb, skip_background, min_tissue, threshold) else None)


def _batches(
    tiles: Iterator[tuple[int, int, np.ndarray | None]], size: int
) -> Iterator[tuple[list[tuple[int, int, np.ndarray]], int]]:
    """Tissue tiles in batches of ``size``, each with the number of grid tiles it consumed.

    The count includes the background tiles skipped since the previous batch, so progress
    advances over the whole grid (the last item may be an empty batch of trailing background).
    """
    batch: list[tuple[int, int, np.ndarray]] = []
    walked = 0
    for r0, c0, rgb in tiles:
        walked += 1
        if rgb is None:
            continue
        batch.append((r0, c0, rgb))
        if len(batch) == size:
            yield batch, walked
            batch, walked = [], 0
    if batch or walked:
        yield batch, walked


def hann_window(height: int, width: int) -> np.ndarray:
    """A 2-D raised-cosine weight, positive everywhere and near zero at the tile border.

    Stitching overlapping tiles with this weight makes each tile fade out where its
    neighbour takes over, so per-tile rescaling (CAMs are min–max scaled per tile) leaves no
    seam at tile borders.
    """
    rows = np.hanning(height + 2)[1:-1].astype(np.float32)
    cols = np.hanning(width + 2)[1:-1].astype(np.float32)
    return np.outer(rows, cols)


def _aggregate(
    probs: np.ndarray, classes: Sequence[str], top_k: int
) -> dict[str, dict[str, float]]:
    if probs.size == 0:
        nan = {c: float("nan") for c in classes}
        return {"mean": nan, "max": dict(nan), "topk_mean": dict(nan)}
    k = max(1, min(int(top_k), probs.shape[0]))
    top = -np.sort(-probs, axis=0)[:k].mean(axis=0)
    return {
        "mean": dict(zip(classes, map(float, probs.mean(axis=0)), strict=True)),
        "max": dict(zip(classes, map(float, probs.max(axis=0)), strict=True)),
        "topk_mean": dict(zip(classes, map(float, top), strict=True)),
    }


def iter_predict_tiled(
    predictor: Any,
    image_or_levels: Any,
    level: int = 0,
    tile_size: int | None = None,
    overlap: float = 0.25,
    skip_background: bool | None = None,
    min_tissue: float = 0.1,
    background_threshold: int = 220,
    cell: int | None = None,
    top_k: int = 5,
    cancel: threading.Event | None = None,
) -> Iterator[Progress | TiledPrediction]:
    """Sliding-window prediction with background skipping, yielding progress per batch.

    Follows ``Predictor.iter_predict``'s protocol: a :class:`Progress` (grid tiles done of
    total) before each batch, the :class:`TiledPrediction` last; once ``cancel`` is set it
    yields ``Progress(cancelled=True)`` before the next batch and stops without a result.

    Args:
        predictor: An ``inference.Predictor``.
        image_or_levels: An array, a list of pyramid levels (largest first) or a ``LoadedImage``.
        level: Level to tile (0 = full resolution).
        tile_size: Tile edge in level pixels (default: the model's input size, i.e. no resize).
        overlap: Fraction of a tile shared with its neighbour, in [0, 1).
        skip_background: Skip tiles with less than ``min_tissue`` tissue (default: histology
            models only; mammograms have a dark background the tissue mask does not model).
        min_tissue: Tissue fraction below which a tile is background.
        background_threshold: Grayscale level at or above which a pixel is background.
        cell: Map cell edge in level pixels (default: the stride / 4, at least 1).
        top_k: Tiles averaged for the ``topk_mean`` aggregate.
        cancel: Event that stops the run.
    """
    levels = _levels(image_or_levels)
    data, tile, stride, down = _geometry(predictor, levels, level, tile_size, overlap)
    skip = predictor.card.modality == "histology" if skip_background is None else skip_background
    cell = int(cell or max(1, stride // 4))
    grid = (-(-data.shape[0] // cell), -(-data.shape[1] // cell))
    total = np.zeros((len(predictor.classes), *grid), np.float64)
    count = np.zeros(grid, np.float64)
    n_grid = len(tile_origins(data.shape[0], tile, stride)) * len(
        tile_origins(data.shape[1], tile, stride)
    )
    done = skipped = 0
    all_probs: list[np.ndarray] = []
    origins: list[tuple[int, int]] = []
    tiles = _tissue_tiles(data, tile, stride, skip, min_tissue, background_threshold)
    for batch, walked in _batches(tiles, predictor.batch_size):
        if cancel is not None and cancel.is_set():
            yield Progress(done, n_grid, "cancelled", cancelled=True)
            return
        yield Progress(done, n_grid, f"classifying tiles {done + 1}-{done + walked} of {n_grid}")
        done += walked
        skipped += walked - len(batch)
        if not batch:
            continue
        probs = predictor.probabilities([rgb for _, _, rgb in batch])
        for (r0, c0, rgb), p in zip(batch, probs, strict=True):
            rs, cs = (
                slice(r0 // cell, -(-(r0 + rgb.shape[0]) // cell)),
                slice(c0 // cell, -(-(c0 + rgb.shape[1]) // cell)),
            )
            total[:, rs, cs] += p[:, None, None]
            count[rs, cs] += 1
            origins.append((r0, c0))
        all_probs.append(probs)
    yield Progress(n_grid, n_grid, "done")
    covered = count > 0
    maps = np.where(covered, total / np.maximum(count, 1), 0.0).astype(np.float32)
    probs = np.concatenate(all_probs) if all_probs else np.zeros((0, len(predictor.classes)))
    scale = (cell * down[0], cell * down[1])
    yield TiledPrediction(
        prob_maps=maps,
        coverage=covered,
        classes=tuple(predictor.classes),
        scale=scale,
        translate=((scale[0] - 1) / 2, (scale[1] - 1) / 2),
        aggregate=_aggregate(probs, predictor.classes, top_k),
        level=level,
        tile_size=tile,
        stride=stride,
        n_tiles=done,
        n_skipped=skipped,
        tile_probabilities=probs.astype(np.float32),
        tile_origins=np.asarray(origins, int).reshape(-1, 2),
    )


def last_result(steps: Iterator[Any]) -> Any:
    """Drain a progress generator; its final non-:class:`Progress` item, or None if cancelled."""
    result = None
    for item in steps:
        if not isinstance(item, Progress):
            result = item
    return result


def predict_tiled(predictor: Any, image_or_levels: Any, **kwargs: Any) -> TiledPrediction | None:
    """:func:`iter_predict_tiled` run to the end (None only if a ``cancel`` event was set)."""
    return last_result(iter_predict_tiled(predictor, image_or_levels, **kwargs))
