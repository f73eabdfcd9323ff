"""Tiles read and decoded in a thread pool ahead of the model, batched, run without autograd.

Decoding (JPEG/LZW tiles in the TIFF or OpenSlide C code, and OpenCV's area resize) releases
the GIL, so a few reader threads keep the next batches ready while the model computes the
current one. Only ``batch × prefetch`` decoded tiles are ever held, whatever the slide size,
so memory stays bounded. A tile that cannot be read is counted and skipped (the caller decides
when too many failures mean the slide is broken); CUDA out-of-memory halves the batch and the
run goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from napari_pathreview.errors import ImageReadError

__all__ = ["ReadyBatch", "TileReader", "forward_tiles", "run_batches", "warm_up"]

logger = logging.getLogger(__name__)


class TileReader:
    """Reads one grid cell's tile at the model's resolution (thread-safe if the source is).

    ``qc``: the ``QCConfig`` tiles are judged by in :meth:`checked` (None: no QC).
    """

    def __init__(self, source: Any, grid: Any, qc: Any = None) -> None:
        self.source = source
        self.grid = grid
        self.qc = qc

    def __call__(self, row: int, col: int) -> np.ndarray:
        """RGB uint8 tile of ``grid.tile_size``: read on ``grid.level``, area-resized."""
        y, x = self.grid.read_origin(row, col)
        h, w = self.grid.read_size
        region = np.asarray(self.source.read_region(self.grid.level, y, x, h, w))
        if region.shape[:2] != (h, w):
            raise ImageReadError(f"tile ({row}, {col}) came back {region.shape}, not {(h, w)}")
        th, tw = self.grid.tile_size
        if (h, w) != (th, tw):
            shrink = h * w > th * tw
            region = cv2.resize(
                region, (tw, th), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        return np.ascontiguousarray(region[..., :3])

    def checked(self, row: int, col: int) -> tuple[np.ndarray, int | None]:
        """The tile and its QC flags (``slide_qc.tile_flags``; None without ``qc``), judged
        here in the reader thread, on the array the model gets, while the model runs."""
        tile = self(row, col)
        if self.qc is None:
            return tile, None
        from napari_pathreview.inference.slide_qc import tile_flags

        return tile, tile_flags(tile, self.qc)


@dataclass(frozen=True)
class ReadyBatch:
    """A classified batch: cells, their probabilities, and the tiles that failed to read;
    ``qc``: each classified tile's QC flags (``slide_qc.TILE_CHECKS`` bits), None without QC."""

    rows: np.ndarray
    cols: np.ndarray
    probabilities: np.ndarray
    failed: int = 0
    error: str = ""
    qc: np.ndarray | None = None


def forward_tiles(predictor: Any, tiles: list[np.ndarray]) -> np.ndarray:
    """N×C probabilities of the grid's tiles as they are (no resize or crop), halving the batch
    on OOM. Tiles are the model's input size, or one patch for a patch MIL model."""
    height, width = tiles[0].shape[:2]
    size = (predictor.spec.input_size[0], int(height), int(width))
    spec = replace(predictor.spec, resize=None, crop="none", input_size=size)
    return predictor.probabilities(tiles, spec=spec).astype(np.float32)


def _read_ahead(
    pool: ThreadPoolExecutor, reader: Callable[[int, int], Any], cells: np.ndarray, ahead: int
) -> Iterator[tuple[int, int, Future]]:
    """(row, col, future) in grid order, keeping at most ``ahead`` reads in flight."""
    queue: deque[tuple[int, int, Future]] = deque()
    for row, col in cells:
        queue.append((int(row), int(col), pool.submit(reader, int(row), int(col))))
        if len(queue) >= ahead:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def _batch_tiles(predictor: Any, settings: Any) -> int:
    """Tiles per forward under ``settings`` (its ``batch_size``, when set, is the predictor's
    from then on)."""
    if settings.batch_size is not None:
        predictor.batch_size = int(settings.batch_size)
    return max(1, int(getattr(predictor, "images_per_forward", predictor.batch_size)))


def warm_up(predictor: Any, settings: Any) -> float:
    """Seconds of one forward of a blank batch shaped as :func:`run_batches` will send.

    A model's first forward is slower than the next ones (cuDNN picks its algorithms, oneDNN
    builds its kernels, the allocator grows its pools): run before a slide's clock starts, it
    leaves the first slide timed as the others are.
    """
    from napari_pathreview.inference.slide_mil import tile_size_of

    start = time.perf_counter()
    height, width = tile_size_of(predictor)
    blank = np.full((height, width, 3), 255, np.uint8)
    forward_tiles(predictor, [blank] * _batch_tiles(predictor, settings))
    return time.perf_counter() - start


def run_batches(
    predictor: Any,
    reader: TileReader,
    cells: np.ndarray,
    settings: Any,
    cancel: threading.Event | None = None,
) -> Iterator[ReadyBatch | None]:
    """Classified batches over ``cells``; a final None means ``cancel`` stopped the run."""
    size = _batch_tiles(predictor, settings)
    ahead = max(size * int(settings.prefetch), int(settings.read_workers))
    pool = ThreadPoolExecutor(max_workers=int(settings.read_workers), thread_name_prefix="tiles")
    try:
        tiles: list[np.ndarray] = []
        where: list[tuple[int, int]] = []
        flags: list[int | None] = []
        judged = reader.qc is not None
        failed, error = 0, ""
        for row, col, future in _read_ahead(pool, reader.checked, cells, ahead):
            try:
                tile, qc = future.result()
                tiles.append(tile)
                flags.append(qc)
                where.append((row, col))
            except ImageReadError as problem:
                failed, error = failed + 1, str(problem)
                logger.warning("skipping tile (%d, %d): %s", row, col, problem)
            if len(tiles) >= size or failed >= size:  # failures surface batch by batch too
                if cancel is not None and cancel.is_set():
                    yield None
                    return
                yield _classify(predictor, tiles, where, flags if judged else None, failed, error)
                tiles, where, flags, failed, error = [], [], [], 0, ""
        if tiles or failed:
            if cancel is not None and cancel.is_set():
                yield None
                return
            yield _classify(predictor, tiles, where, flags if judged else None, failed, error)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _classify(
    predictor: Any,
    tiles: list[np.ndarray],
    where: list[tuple[int, int]],
    flags: list[int | None] | None,
    failed: int,
    error: str,
) -> ReadyBatch:
    cells = np.asarray(where, int).reshape(-1, 2)
    probs = (
        forward_tiles(predictor, tiles)
        if tiles
        else np.zeros((0, len(predictor.classes)), np.float32)
    )
    qc = None if flags is None else np.asarray(flags, np.uint8).reshape(-1)
    return ReadyBatch(cells[:, 0], cells[:, 1], probs, failed, error, qc)
