"""Direct tile access to a tiled TIFF page: read the bytes, decode, assemble, cache.

tifffile's zarr store is general (any axes, planar layouts) but pays zarr's per-call
overhead for every chunk. For the common slide layout (one contiguous, tiled RGB page per
level) reading the tile bytes through tifffile's file handle and decoding them with the
page's own codec is several times faster, and a small decoded-tile cache (as OpenSlide
keeps) makes panning over the same tiles free.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

TILE_CACHE_BYTES = 64 * 2**20
"""Decoded tiles kept per open slide (OpenSlide keeps 32 MiB by default)."""


class TileCache:
    """A thread-safe LRU of decoded tiles bounded in bytes."""

    def __init__(self, budget: int = TILE_CACHE_BYTES) -> None:
        self._budget = budget
        self._used = 0
        self._tiles: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: tuple[int, int], tile: np.ndarray) -> None:
        with self._lock:
            if key in self._tiles or tile.nbytes > self._budget:
                return
            self._tiles[key] = tile
            self._used += tile.nbytes
            while self._used > self._budget:
                _, dropped = self._tiles.popitem(last=False)
                self._used -= dropped.nbytes


def direct_readable(page: Any, axes: str) -> bool:
    """True for a tiled, contiguous, single-plane page whose codec tifffile has."""
    import tifffile

    return (
        bool(page.is_tiled)
        and page.planarconfig == 1
        and page.imagedepth == 1
        and axes in ("YXS", "YX")
        and page.compression in tifffile.TIFF.DECOMPRESSORS
    )


class TileReader:
    """Regions of one tiled TIFF page, decoded tile by tile through a shared cache."""

    def __init__(self, tif: Any, page: Any, level: int, cache: TileCache, fill: int) -> None:
        self._fh = tif.filehandle
        self._fh.set_lock(True)  # dask and napari read tiles from several threads
        self._page = page
        self._level = level
        self._cache = cache
        self._fill = fill
        self._offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self._counts = np.asarray(page.databytecounts, dtype=np.int64)
        self._tile = (page.tilelength, page.tilewidth)
        self._columns = -(-page.imagewidth // page.tilewidth)
        self._samples = page.samplesperpixel
        self._dtype = page.dtype

    def _decoded(self, index: int) -> np.ndarray | None:
        """The tile at ``index`` as (tile_h, tile_w, samples), None when the tile is empty."""
        if self._counts[index] == 0 or self._offsets[index] == 0:
            return None
        key = (self._level, index)
        tile = self._cache.get(key)
        if tile is None:
            with self._fh.lock:
                self._fh.seek(int(self._offsets[index]))
                data = self._fh.read(int(self._counts[index]))
            decoded = self._page.decode(data, index, jpegtables=self._page.jpegtables)[0]
            tile = np.asarray(decoded).reshape(*self._tile, self._samples)
            self._cache.put(key, tile)
        return tile

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """An in-bounds region (h, w, samples) in the page's dtype."""
        tile_h, tile_w = self._tile
        out = np.empty((h, w, self._samples), dtype=self._dtype)
        for row in range(y // tile_h, (y + h - 1) // tile_h + 1):
            top = row * tile_h
            y0, y1 = max(y, top), min(y + h, top + tile_h)
            for col in range(x // tile_w, (x + w - 1) // tile_w + 1):
                left = col * tile_w
                x0, x1 = max(x, left), min(x + w, left + tile_w)
                tile = self._decoded(row * self._columns + col)
                target = out[y0 - y : y1 - y, x0 - x : x1 - x]
                if tile is None:
                    target[...] = self._fill
                else:
                    target[...] = tile[y0 - top : y1 - top, x0 - left : x1 - left]
        return out
