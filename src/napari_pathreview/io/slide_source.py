"""The slide-access contract every whole-slide backend honours: ``SlideSource``.

A slide is a pyramid of RGB levels, too large to read whole. Callers ask for regions
(``read_region``) or take the levels as lazy dask arrays (``level_arrays``: napari and the
tiled inference engine read only the chunks they touch). Backends (tifffile, OpenSlide,
wsidicom) implement three small methods; bounds, padding, validation, fingerprints and
the dask views live here once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.io.alpha import GLASS
from napari_pathreview.io.focal_planes import FocalPlanes
from napari_pathreview.io.slide_files import files_state, slide_files

logger = logging.getLogger(__name__)

BACKGROUND = GLASS
"""Slide glass is white: regions outside a level are padded with it, as transparent pixels
show it (:mod:`.alpha`)."""

HEADER_BYTES = 65536
"""Bytes of each index file hashed into the fingerprint (headers and tile tables, not pixels)."""

MIN_CHUNK = 512
"""Smallest dask chunk edge: small native tiles are grouped so napari makes fewer calls."""


class SlideSource(ABC):
    """An open whole-slide image: levels, physical scale, regions, associated images.

    Attributes:
        path: The file (or DICOM folder) that was opened.
        level_shapes: (height, width) of each level, largest first.
        level_downsamples: Level-0 pixels per level pixel, 1.0 first.
        um_per_px: Level-0 pixel size in µm, None when the file does not state it.
        objective_power: Scanning objective (e.g. 20.0, 40.0), None when not stated.
        properties: Vendor metadata as strings (JSON-able).
        backend: "tifffile", "openslide" or "wsidicom".
        focal_planes: A z-stack's planes and the one read (:mod:`.focal_planes`); None for
            a slide of one plane.
    """

    backend: str = ""
    focal_planes: FocalPlanes | None = None

    def __init__(
        self,
        path: Path,
        level_shapes: Sequence[tuple[int, int]],
        *,
        um_per_px: float | None = None,
        objective_power: float | None = None,
        level_downsamples: Sequence[float] | None = None,
        level_tiles: Sequence[tuple[int, int]] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.level_shapes = tuple((int(h), int(w)) for h, w in level_shapes)
        self._check_levels()
        base_h, base_w = self.level_shapes[0]
        self.level_downsamples = tuple(
            float(d)
            for d in (
                level_downsamples or [(base_h / h + base_w / w) / 2.0 for h, w in self.level_shapes]
            )
        )
        self.um_per_px = float(um_per_px) if um_per_px and um_per_px > 0 else None
        self.objective_power = (
            float(objective_power) if objective_power and objective_power > 0 else None
        )
        self.level_tiles = tuple(level_tiles or [(256, 256)] * len(self.level_shapes))
        self.properties = dict(properties or {})
        self._fingerprint: str | None = None
        self._associated: dict[str, np.ndarray] = {}
        self._closed = False
        self._lock = threading.Lock()

    # --- what a backend implements -------------------------------------------------

    @abstractmethod
    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Read an in-bounds region of a level as RGB uint8 h×w×3."""

    def _associated_names(self) -> list[str]:
        """Names of the associated images (label, macro, thumbnail) the file holds."""
        return []

    def _read_associated(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def _close(self) -> None:  # noqa: B027 - in-memory sources hold no handle
        """Release file handles."""

    def _fingerprint_files(self) -> list[Path]:
        """The index files whose headers the fingerprint hashes (the size and modification
        time of every file of the slide are hashed besides: ``slide_files.files_state``)."""
        return [self.path]

    # --- the contract ----------------------------------------------------------------

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_shapes)

    def read_region(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Pixels of a level's window as RGB uint8 h×w×3, white where it leaves the level.

        Args:
            level: Pyramid level, 0 = full resolution.
            y: Top row in that level's pixels (may be negative).
            x: Left column in that level's pixels (may be negative).
            h: Height of the window (> 0).
            w: Width of the window (> 0).

        Raises:
            InvalidInputError: No such level, or an empty window.
            ImageReadError: A tile of the file cannot be decoded; the message names the file.
        """
        if self._closed:
            raise InvalidInputError(f"{self.path}: the slide is closed")
        if not 0 <= level < self.level_count:
            raise InvalidInputError(
                f"{self.path}: level {level} does not exist (the slide has {self.level_count})"
            )
        if h <= 0 or w <= 0:
            raise InvalidInputError(f"region size must be positive, got {h}×{w}")
        height, width = self.level_shapes[level]
        top, left = max(y, 0), max(x, 0)
        bottom, right = min(y + h, height), min(x + w, width)
        if top == y and left == x and bottom - top == h and right - left == w:
            return self._read_checked(level, y, x, h, w)
        out = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
        if bottom > top and right > left:
            out[top - y : bottom - y, left - x : right - x] = self._read_checked(
                level, top, left, bottom - top, right - left
            )
        return out

    def _read_checked(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        try:
            region = self._read(level, y, x, h, w)
        except (ImageReadError, InvalidInputError):
            raise
        except Exception as error:  # codecs raise many kinds on corrupt or truncated tiles
            raise ImageReadError(
                f"{self.path}: cannot decode level {level} at (y={y}, x={x}): "
                f"{type(error).__name__}: {error}"
            ) from error
        if region.shape != (h, w, 3) or region.dtype != np.uint8:
            raise ImageReadError(
                f"{self.path}: level {level} gave a {region.shape} {region.dtype} region, "
                f"expected {(h, w, 3)} uint8"
            )
        return region

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        """Label, macro, thumbnail…: name → RGB uint8 array, each read on first access.

        The label may show patient identifiers: readers never display it unasked.
        """
        return _AssociatedImages(self)

    @property
    def fingerprint(self) -> str:
        """A cheap hash for caches (sha256): level shapes, the headers of the index files
        (``_fingerprint_files``), and the size and modification time of every file the slide
        is read from (``slide_files.slide_files``: a MIRAX's ``Data*.dat``, the images a
        ``.vms`` names, a DICOM series' instances), so a file rewritten in place, even at the
        same size and header, is another slide to a cache as it is to a cohort. Only
        ``stat`` is called on the tile files: nothing the size of a slide is read. The files
        are taken in name order: any instance of a DICOM series names the same slide."""
        if self._fingerprint is None:
            digest = hashlib.sha256(repr(self.level_shapes).encode())
            for file in sorted(self._fingerprint_files())[:64]:
                with open(file, "rb") as handle:
                    digest.update(handle.read(HEADER_BYTES))
            folder = self.path if self.path.is_dir() else self.path.parent
            digest.update(files_state(sorted(slide_files(self.path)), folder).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def level_arrays(self) -> list[Any]:
        """Every level as a lazy dask array (h×w×3 uint8) chunked on the file's tiles."""
        import dask.array as da

        arrays = []
        for level, (height, width) in enumerate(self.level_shapes):
            tile_h, tile_w = self.level_tiles[level]
            chunks = (_chunk(tile_h, height), _chunk(tile_w, width), 3)
            view = _LevelView(self, level)
            name = f"slide-{self.fingerprint[:16]}-{self.backend}-{level}"
            arrays.append(da.from_array(view, chunks=chunks, name=name, asarray=False))
        return arrays

    def close(self) -> None:
        """Release the file; reading afterwards raises."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> SlideSource:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, levels={list(self.level_shapes)}, "
            f"um_per_px={self.um_per_px})"
        )

    def _check_levels(self) -> None:
        check_level_shapes(self.path, self.level_shapes)


def check_level_shapes(path: Path, shapes: Sequence[tuple[int, int]]) -> None:
    """Refuse empty pyramids and levels whose aspect ratio disagrees with level 0.

    Raises:
        ImageReadError: Naming the file and the offending level.
    """
    if not shapes or min(min(shape) for shape in shapes) < 1:
        raise ImageReadError(f"{path}: the slide has no image level")
    base_h, base_w = shapes[0]
    for level, (height, width) in enumerate(shapes[1:], start=1):
        down_h, down_w = base_h / height, base_w / width
        # each level edge is rounded to whole pixels: allow that, plus 1 %
        slack = max(down_h, down_w) * (1.0 / height + 1.0 / width) + 0.01 * down_h
        if abs(down_h - down_w) > slack:
            raise ImageReadError(
                f"{path}: level {level} ({height}×{width}) does not have the aspect "
                f"ratio of level 0 ({base_h}×{base_w}); the pyramid is inconsistent"
            )


def _chunk(tile: int, extent: int) -> int:
    """A chunk edge: a whole number of tiles, at least MIN_CHUNK, at most the extent."""
    tile = max(1, int(tile))
    return max(1, min(extent, tile * max(1, -(-MIN_CHUNK // tile))))


class _LevelView:
    """A numpy-like view of one level that dask slices chunk by chunk."""

    def __init__(self, source: SlideSource, level: int) -> None:
        self.source = source
        self.level = level
        self.shape = (*source.level_shapes[level], 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, index: Any) -> np.ndarray:
        """numpy indexing (ints, slices with steps, index arrays) over one region read."""
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (3 - len(index))
        rows = np.arange(self.shape[0])[index[0]]
        cols = np.arange(self.shape[1])[index[1]]
        if np.size(rows) == 0 or np.size(cols) == 0:
            return np.empty((*np.shape(rows), *np.shape(cols), 3), np.uint8)[..., index[2]]
        top, left = int(np.min(rows)), int(np.min(cols))
        region = self.source.read_region(
            self.level, top, left, int(np.max(rows)) - top + 1, int(np.max(cols)) - left + 1
        )
        region = region[rows - top] if np.ndim(rows) else region[int(rows) - top]
        column_axis = 1 if np.ndim(rows) else 0
        picked = np.take(region, cols - left, axis=column_axis)
        return picked[(..., index[2])]


class _AssociatedImages(Mapping[str, np.ndarray]):
    """A read-on-first-access mapping of a slide's associated images."""

    def __init__(self, source: SlideSource) -> None:
        self._source = source

    def __getitem__(self, name: str) -> np.ndarray:
        cache = self._source._associated
        if name not in cache:
            if name not in self._source._associated_names():
                raise KeyError(f"{self._source.path} has no associated image {name!r}")
            try:
                cache[name] = self._source._read_associated(name)
            except ImageReadError:
                raise
            except Exception as error:
                raise ImageReadError(
                    f"{self._source.path}: cannot decode the {name} image ({error})"
                ) from error
        return cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._source._associated_names())

    def __len__(self) -> int:
        return len(self._source._associated_names())
