"""CAMs of a whole slide at the model's resolution, stitched into a bounded map.

The heatmap grid (``slide_grid.plan_grid``) says where tiles are and what resolution the model
sees; this module explains tiles read on that same plan and blends their CAMs into a map that
covers level 0 exactly, ``k`` map pixels per grid cell (a modest multiple of the heatmap
grid, so memory grows with the number of tiles, never with the slide's pixel count).

Tiles are explained on a grid with half-tile stride (50 % overlap, same tile size and µm/px
as the classification grid): every point is covered by several tiles, and each tile's CAM
(min–max scaled within the tile, then weighted by the tile's probability of the target class)
is blended with :func:`tiling.hann_window`, so a tile fades out where its neighbour takes over
and no tile seams remain. Each map pixel samples the tile CAM at its own centre (bilinear), so
the map lines up with the slide at sub-pixel accuracy whatever the cell size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

import cv2
import numpy as np

from napari_pathreview.errors import ImageReadError
from napari_pathreview.inference.progress import Progress
from napari_pathreview.inference.tiled_cams import tile_cams
from napari_pathreview.inference.tiling import TiledCam, hann_window

__all__ = [
    "CAM_MAP_MAX_SIDE",
    "CamCanvas",
    "cam_cache_fields",
    "cam_grid",
    "iter_slide_cam",
    "tile_box0",
]

#: The stitched CAM map is at most this many pixels on its long side (unless the heatmap grid
#: itself is larger: then one map pixel per cell).
CAM_MAP_MAX_SIDE = 2048
#: At most this many map pixels per heatmap cell along each axis.
CAM_MAX_PER_CELL = 16
#: Bumped when the stitched CAM for the same inputs changes (invalidates cached CAMs).
CAM_VERSION = 1


def tile_box0(grid: Any, row: int, col: int) -> tuple[float, float, float, float]:
    """(y0, x0, h, w) in level-0 pixels of the region ``TileReader`` really reads for a cell.

    ``read_origin`` rounds to whole pixels of the read level, so this (not the ideal
    ``box0``) is what the tile's pixels show.
    """
    y, x = grid.read_origin(row, col)
    return (
        y * grid.downsample,
        x * grid.downsample,
        grid.read_size[0] * grid.downsample,
        grid.read_size[1] * grid.downsample,
    )


class CamCanvas:
    """Accumulates tile CAMs (Hann-weighted) into a map covering level 0 exactly.

    Args:
        level0_shape: (height, width) of the slide's level 0.
        map_shape: (rows, cols) of the map; one map pixel is ``level0 / map`` level-0 pixels.
    """

    def __init__(self, level0_shape: tuple[int, int], map_shape: tuple[int, int]) -> None:
        self.level0_shape = tuple(int(v) for v in level0_shape)
        self.shape = tuple(int(v) for v in map_shape)
        self.pixel = (
            self.level0_shape[0] / self.shape[0],
            self.level0_shape[1] / self.shape[1],
        )
        self.total = np.zeros(self.shape, np.float32)
        self.weight = np.zeros(self.shape, np.float32)

    def _axis(self, start: float, extent: float, n_tile: int, axis: int) -> tuple[int, np.ndarray]:
        """First map index and tile coordinates of the map pixels whose centre is in the tile."""
        size = self.pixel[axis]
        first = max(0, int(np.ceil(start / size - 0.5)))
        last = min(self.shape[axis] - 1, int(np.floor((start + extent) / size - 0.5)))
        index = np.arange(first, last + 1, dtype=np.float64)
        coords = ((index + 0.5) * size - start) * n_tile / extent - 0.5
        return first, np.clip(coords, 0.0, n_tile - 1.0).astype(np.float32)

    def add(self, tile_map: np.ndarray, box0: tuple[float, float, float, float]) -> None:
        """Blend one tile's map (tile pixels) covering the level-0 box ``(y0, x0, h, w)``."""
        tile_map = np.asarray(tile_map, np.float32)
        th, tw = tile_map.shape
        r0, ys = self._axis(box0[0], box0[2], th, 0)
        c0, xs = self._axis(box0[1], box0[3], tw, 1)
        if ys.size == 0 or xs.size == 0:
            return
        map_x, map_y = np.meshgrid(xs, ys)
        window = hann_window(th, tw)
        sample = cv2.remap(
            tile_map * window, map_x, map_y, cv2.INTER_LINEAR, None, cv2.BORDER_REPLICATE
        )
        weight = cv2.remap(window, map_x, map_y, cv2.INTER_LINEAR, None, cv2.BORDER_REPLICATE)
        rows, cols = slice(r0, r0 + ys.size), slice(c0, c0 + xs.size)
        self.total[rows, cols] += sample
        self.weight[rows, cols] += weight

    def result(self) -> np.ndarray:
        """The blended map: weighted mean of the tiles covering each pixel, 0 where none."""
        covered = self.weight > 1e-6
        return np.where(covered, self.total / np.maximum(self.weight, 1e-6), 0.0).astype(np.float32)


def cam_grid(source: Any, grid: Any, settings: Any, model_um: float | None) -> Any:
    """The explanation grid: the heatmap grid's tiles at half-tile stride (50 % overlap)."""
    from napari_pathreview.inference.slide_grid import plan_grid

    return plan_grid(source, grid.tile_size, replace(settings, overlap=0.5), model_um)


def map_shape(heat_shape: Sequence[int], max_side: int = CAM_MAP_MAX_SIDE) -> tuple[int, int]:
    """The CAM map's shape: ``k`` pixels per heatmap cell, the long side at most ``max_side``."""
    k = max(1, min(CAM_MAX_PER_CELL, max_side // max(int(heat_shape[0]), int(heat_shape[1]))))
    return int(heat_shape[0]) * k, int(heat_shape[1]) * k


def cam_cache_fields(
    predictor: Any, method: str, target_index: int, options: Mapping[str, Any]
) -> dict[str, Any]:
    """What changes a slide's CAM beyond its heatmap's cache key (slide, model, stain, TTA,
    tiling): the method, the class explained and the CAM options (speed knobs left out)."""
    from napari_pathreview.explain.cams import resolve_method

    name = resolve_method(method)
    return {
        "cam_version": CAM_VERSION,
        "map_max_side": CAM_MAP_MAX_SIDE,
        "method": name,
        "target_class": int(target_index),
        "target_label": str(predictor.classes[target_index]),
        "cam_tta": options.get("tta", "none"),
        "scorecam_top_k": options.get("top_k") if name == "scorecam" else None,
    }


def _default_explainer(predictor: Any, method: str, index: int, options: Mapping) -> Callable:
    """``tiles -> N×h×w`` CAMs of model-size tiles, each weighted by P(target) of its tile:
    :func:`tiled_cams.tile_cams` (one forward per tile; classified as the heatmap classifies
    them when the CAM's forward cannot give the probabilities)."""
    from napari_pathreview.inference.prefetch import forward_tiles

    spec = replace(predictor.spec, resize=None, crop="none")

    def explain(tiles: list[np.ndarray], cancel: threading.Event | None) -> np.ndarray:
        x = predictor.prepare(tiles, spec).detach().clone()
        classify = partial(forward_tiles, predictor, tiles)
        maps, probs = tile_cams(predictor, x, method, index, classify, options, cancel)
        return maps * probs[:, None, None].astype(np.float32)

    return explain


def iter_slide_cam(
    predictor: Any,
    source: Any,
    heat_grid: Any,
    settings: Any,
    target_index: int,
    method: str = "gradcam",
    cancel: threading.Event | None = None,
    explainer: Callable | None = None,
    cam_options: Mapping[str, Any] | None = None,
) -> Iterator[Progress | TiledCam]:
    """Explain a slide's tissue tiles at the model's resolution and stitch one CAM map.

    Yields a :class:`Progress` per batch (tiles done of total) and the :class:`TiledCam`
    last; once ``cancel`` is set, ``Progress(cancelled=True)`` and stops (one batch at most).

    Args:
        predictor: An ``inference.Predictor``.
        source: The ``SlideSource`` the heatmap was computed on.
        heat_grid: The heatmap's ``SlideGrid`` (its tile size, level and µm/px are reused).
        settings: The run's ``SlideSettings`` (mode, tissue threshold, readers).
        target_index: Class to explain.
        method: CAM method name.
        cancel: Event that stops the run.
        explainer: ``(tiles, cancel) -> N×h×w`` maps; default Grad-CAM-style CAMs weighted by
            the tile's probability of the target class.
        cam_options: ``explain.explain_batch`` options for each tile batch: ``tta`` (CAM
            test-time augmentation) and Score-CAM's ``batch_size`` / ``top_k``.
    """
    from napari_pathreview.explain.cams import resolve_method
    from napari_pathreview.inference.prefetch import TileReader, _read_ahead
    from napari_pathreview.inference.slide_grid import run_um_per_px, tissue_tiles

    grid = cam_grid(source, heat_grid, settings, run_um_per_px(predictor.card, settings))
    _, cells = tissue_tiles(source, grid, settings)
    canvas = CamCanvas(heat_grid.level0_shape, map_shape(heat_grid.shape))
    explain = explainer or _default_explainer(predictor, method, target_index, cam_options or {})
    size = max(1, int(predictor.batch_size))
    reader = TileReader(source, grid)
    done = 0
    with ThreadPoolExecutor(int(settings.read_workers), thread_name_prefix="cam-tiles") as pool:
        batch: list[tuple[int, int, np.ndarray]] = []
        for row, col, future in _read_ahead(pool, reader, cells, size * int(settings.prefetch)):
            try:
                batch.append((row, col, future.result()))
            except ImageReadError:
                done += 1  # an unreadable tile leaves its area to its neighbours
            if len(batch) < size and done + len(batch) < len(cells):
                continue
            if cancel is not None and cancel.is_set():
                yield Progress(done, len(cells), "cancelled", cancelled=True)
                return
            yield Progress(done, len(cells), f"explaining tiles {done + 1}-{done + len(batch)}")
            if batch:
                try:
                    maps = explain([tile for _, _, tile in batch], cancel)
                except InterruptedError:  # a CAM method saw ``cancel`` mid-batch
                    yield Progress(done, len(cells), "cancelled", cancelled=True)
                    return
                for (r, c, _), tile_map in zip(batch, maps, strict=True):
                    canvas.add(tile_map, tile_box0(grid, r, c))
            done += len(batch)
            batch = []
    yield Progress(len(cells), len(cells), "done")
    scale = canvas.pixel
    label = predictor.classes[target_index]
    yield TiledCam(canvas.result(), resolve_method(method), target_index, label, scale, grid.level)
