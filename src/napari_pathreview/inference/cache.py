"""Slide results kept on disk, so reopening a slide and pressing Run again is instant.

An entry is keyed by everything that changes the numbers: the slide's content fingerprint,
the model (name@version and the sha256 of its weights), its preprocessing spec, the stain and
TTA settings, and the tiling settings. It is a zarr group (probability maps, coverage, the tile
table; the grid and aggregates as attributes) plus ``tiles.geojson``, the tile predictions as
QuPath-importable GeoJSON. A slide's stitched CAMs lie beside its result, in ``cams/``, one per
(method, target class, CAM options): explaining takes longer than classifying, so pressing Run
again must not explain again. The cache has a size limit: least recently used entries (with
their CAMs) go first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview._atomic import write_atomically
from napari_pathreview.errors import InvalidInputError

__all__ = [
    "CacheEntry",
    "SlideCache",
    "cache_key",
    "cached_slide",
    "cached_slide_cam",
    "read_result",
    "tiles_geojson",
    "write_result",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 2**30
"""Default cache size limit (2 GiB); ``$PATHREVIEW_CACHE_MAX_MB`` overrides it."""

CAM_FOLDER = "cams"
"""Where a result's stitched CAMs lie inside its folder (:meth:`SlideCache.put_cam`)."""

PARTIAL_MARK = ".tmp"
"""``<folder>.tmp<pid>``: where :func:`write_result` writes before moving the result in place."""

ENGINE_VERSION = 2
"""Bumped when the engine's output for the same inputs changes (invalidates old entries).
2: results carry their tiles' quality checks (``SlideResult.tile_qc``)."""


def cache_key(
    slide_fingerprint: str, predictor: Any, settings: Any, slide_um_per_px: float | None = None
) -> tuple[str, dict]:
    """(sha256 hex key, the JSON-able fields it was computed from).

    ``slide_um_per_px``: the level-0 pixel size the slide is read with. It is not in the
    file's fingerprint when given by hand (a size typed in the Analyze dock, ``um_per_px=``),
    and another size is another tile grid.
    """
    card = predictor.card
    spec = getattr(card, "preprocess", None)
    normalizer = getattr(predictor, "normalizer", None)
    stain_state = normalizer.to_dict() if hasattr(normalizer, "to_dict") else None
    fields = {
        "engine": ENGINE_VERSION,
        "slide": slide_fingerprint,
        "slide_um_per_px": slide_um_per_px,
        "model": predictor.model_ref,
        "weights": getattr(card, "weights_sha256", None),
        "preprocess": spec.to_dict() if hasattr(spec, "to_dict") else repr(predictor.spec),
        "stain": predictor.stain_name,
        "stain_state": stain_state,
        "tta": predictor.tta,
        # the card's thresholds the tiles were judged by (``slide_qc``); None: QC off
        "qc": predictor.qc_config.to_dict() if getattr(predictor, "qc", False) else None,
        "settings": settings.cache_fields(),
    }
    text = json.dumps(fields, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest(), fields


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def tiles_geojson(result: Any) -> dict[str, Any]:
    """Tile predictions as a GeoJSON FeatureCollection QuPath imports (level-0 x, y pixels).

    It lies in a cache or cohort folder with no slide beside it, so it carries the slide's
    frame (``geojson.FRAME_KEY``): it opens in napari over the slide, at the slide's µm/px.
    """
    from napari_pathreview.inference.slide_qc import failed_checks
    from napari_pathreview.io.geojson import FRAME_KEY, PIXEL_ORIGIN_KEY, frame_of
    from napari_pathreview.io.pixel_origin import CORNER

    grid = result.grid
    features = []
    qc = None if result.tile_qc is None else failed_checks(result.tile_qc)
    for i, (row, col, probs) in enumerate(
        zip(result.tile_rows, result.tile_cols, result.tile_probabilities, strict=True)
    ):
        y0, x0 = float(row) * grid.cell[0], float(col) * grid.cell[1]
        y1, x1 = y0 + grid.cell[0], x0 + grid.cell[1]
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        label = result.classes[int(np.argmax(probs))]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "tile",
                    "classification": {"name": label},
                    "measurements": {
                        f"P({name})": float(p)
                        for name, p in zip(result.classes, probs, strict=True)
                    },
                    "model": result.model_ref,
                    **({"qc": qc[i]} if qc is not None else {}),
                },
            }
        )
    um = grid.level0_um_per_px
    frame = {"scale": (um, um), "units": ("um", "um")} if um else {"scale": (1.0, 1.0)}
    return {
        "type": "FeatureCollection",
        "features": features,
        FRAME_KEY: frame_of(frame),
        PIXEL_ORIGIN_KEY: CORNER,  # a tile's edges: its pixels x0 .. x1 - 1, as QuPath reads
    }


def write_result(folder: Path, result: Any, meta: dict[str, Any] | None = None) -> Path:
    """Write a ``SlideResult`` as ``folder/result.zarr`` + ``folder/tiles.geojson`` atomically."""
    import zarr

    folder = Path(folder)
    tmp = folder.with_name(folder.name + f"{PARTIAL_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    group = zarr.open_group(str(tmp / "result.zarr"), mode="w")
    group.create_array("prob_maps", data=np.asarray(result.prob_maps, np.float32))
    group.create_array("coverage", data=np.asarray(result.coverage, bool))
    tiles = np.stack([result.tile_rows, result.tile_cols], axis=1).astype(np.int32)
    group.create_array("tile_cells", data=tiles.reshape(-1, 2))
    group.create_array("tile_probabilities", data=np.asarray(result.tile_probabilities, np.float32))
    if result.tile_qc is not None:  # bits over slide_qc.TILE_CHECKS, as the attrs name them
        group.create_array("tile_qc", data=np.asarray(result.tile_qc, np.uint8))
    if result.bag is not None:  # a patch MIL model's slide decision and tile attention
        group.create_array("bag_probabilities", data=result.bag.probabilities)
        group.create_array("bag_attention", data=result.bag.attention)
    attrs = {
        "grid": json.loads(json.dumps(asdict(result.grid))),
        "classes": list(result.classes),
        "model_ref": result.model_ref,
        "aggregate": result.aggregate,
        "tissue_area_mm2": _finite(result.tissue_area_mm2),
        "n_failed": int(result.n_failed),
        "tiles_per_s": float(result.tiles_per_s),
        "seconds": float(result.seconds),
        "settings": result.settings,
        "meta": meta or {},
    }
    if result.tile_qc is not None:
        from napari_pathreview.inference.slide_qc import TILE_CHECKS

        attrs["tile_qc_checks"] = list(TILE_CHECKS)
    group.attrs.update(json.loads(json.dumps(attrs, default=_json_default)))
    (tmp / "tiles.geojson").write_text(json.dumps(tiles_geojson(result)))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def is_partial(folder: Path) -> bool:
    """A folder :func:`write_result` is (or was, when killed) writing: ``<name>.tmp<pid>``."""
    name, mark, pid = folder.name.rpartition(PARTIAL_MARK)
    return bool(name and mark and pid.isdigit())


def remove_stale_partials(root: Path) -> list[Path]:
    """Remove the partial results under ``root`` whose writing process is gone (a killed run);
    returns them. Those of a live process on this machine are left to finish."""
    stale = []
    for folder in sorted(root.iterdir()) if Path(root).is_dir() else ():
        if (
            folder.is_dir()
            and is_partial(folder)
            and not _alive(int(folder.name.rpartition(PARTIAL_MARK)[2]))
        ):
            shutil.rmtree(folder, ignore_errors=True)
            stale.append(folder)
    if stale:
        logger.info("removed %d partial result(s) left by a stopped run in %s", len(stale), root)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or not ours to judge: keep its folder
    return True


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def read_result(folder: Path) -> Any:
    """The ``SlideResult`` stored by :func:`write_result`, marked ``cached`` (its ``seconds``
    are the stored run's)."""
    import zarr

    from napari_pathreview.inference.slide_mil import SlideBag
    from napari_pathreview.inference.slides import SlideGrid, SlideResult

    group = zarr.open_group(str(Path(folder) / "result.zarr"), mode="r")
    attrs = dict(group.attrs)
    bag = None
    if "bag_attention" in group:
        bag = SlideBag(
            np.asarray(group["bag_probabilities"][:]), np.asarray(group["bag_attention"][:])
        )
    grid_fields = {k: tuple(v) if isinstance(v, list) else v for k, v in attrs["grid"].items()}
    cells = np.asarray(group["tile_cells"][:]).reshape(-1, 2)
    area = attrs.get("tissue_area_mm2")
    return SlideResult(
        grid=SlideGrid(**grid_fields),
        classes=tuple(attrs["classes"]),
        model_ref=attrs["model_ref"],
        prob_maps=np.asarray(group["prob_maps"][:]),
        coverage=np.asarray(group["coverage"][:]),
        tile_rows=cells[:, 0].astype(int),
        tile_cols=cells[:, 1].astype(int),
        tile_probabilities=np.asarray(group["tile_probabilities"][:]),
        aggregate=attrs["aggregate"],
        tissue_area_mm2=float("nan") if area is None else float(area),
        n_failed=int(attrs.get("n_failed", 0)),
        tiles_per_s=float(attrs.get("tiles_per_s", 0.0)),
        seconds=float(attrs.get("seconds", 0.0)),
        settings=attrs.get("settings", {}),
        bag=bag,
        tile_qc=np.asarray(group["tile_qc"][:]) if "tile_qc" in group else None,
        cached=True,
    )


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class CacheEntry:
    """One cached slide result: where it is, what it holds, how big it is."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = folder.name
        info = folder / "key.json"
        self.fields = json.loads(info.read_text()) if info.is_file() else {}
        self.bytes = _folder_bytes(folder)
        self.used = folder.stat().st_mtime

    @property
    def slide(self) -> str:
        return str(self.fields.get("slide_path", ""))


class SlideCache:
    """The on-disk result cache under ``$PATHREVIEW_HOME/cache/slides``.

    Args:
        root: Folder (default: the home folder's ``cache/slides``).
        max_bytes: Size limit; least recently used entries are evicted past it.
    """

    def __init__(self, root: str | Path | None = None, max_bytes: int | None = None) -> None:
        if root is None:
            from napari_pathreview.home import pathreview_home

            root = pathreview_home() / "cache" / "slides"
        self.root = Path(root)
        if max_bytes is None:
            env = os.environ.get("PATHREVIEW_CACHE_MAX_MB")
            try:
                max_bytes = int(float(env) * 2**20) if env else DEFAULT_MAX_BYTES
            except ValueError as error:
                raise InvalidInputError(
                    f"PATHREVIEW_CACHE_MAX_MB must be a number of megabytes, got {env!r}"
                ) from error
        if max_bytes <= 0:
            raise InvalidInputError(f"cache size limit must be positive, got {max_bytes} bytes")
        self.max_bytes = int(max_bytes)

    def folder(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> Any | None:
        """The cached result for ``key`` (and mark it recently used), or None."""
        folder = self.folder(key)
        if not (folder / "result.zarr").exists():
            return None
        try:
            result = read_result(folder)
        except Exception as error:  # a damaged entry is dropped, not fatal
            logger.warning("dropping unreadable cache entry %s: %s", folder, error)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        os.utime(folder)
        return result

    def put(self, key: str, result: Any, fields: dict[str, Any]) -> Path:
        """Store a result under ``key``, then evict old entries past the size limit."""
        folder = write_result(self.folder(key), result, meta=fields)
        (folder / "key.json").write_text(json.dumps(fields, default=_json_default, indent=1))
        self.evict(keep=key)
        return folder

    def get_cam(self, key: str, cam: str) -> Any | None:
        """The ``TiledCam`` stored as ``cam`` beside the result ``key`` (and mark the entry
        recently used), or None."""
        path = self.folder(key) / CAM_FOLDER / f"{cam}.npz"
        if not (self.folder(key) / "result.zarr").exists() or not path.is_file():
            return None
        try:
            stored = read_cam(path)
        except Exception as error:  # a damaged CAM is computed again, not fatal
            logger.warning("dropping unreadable cached CAM %s: %s", path, error)
            path.unlink(missing_ok=True)
            return None
        os.utime(self.folder(key))
        return stored

    def put_cam(self, key: str, cam: str, tiled_cam: Any) -> Path | None:
        """Store a ``TiledCam`` beside the result ``key`` (None, nothing stored, when that result
        is not cached), then evict old entries past the size limit."""
        folder = self.folder(key)
        if not (folder / "result.zarr").exists():
            return None
        path = write_cam(folder / CAM_FOLDER / f"{cam}.npz", tiled_cam)
        self.evict(keep=key)
        return path

    def entries(self) -> list[CacheEntry]:
        """Entries, most recently used first."""
        if not self.root.is_dir():
            return []
        found = [CacheEntry(f) for f in self.root.iterdir() if (f / "result.zarr").exists()]
        return sorted(found, key=lambda e: e.used, reverse=True)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the cache fits; returns removed keys."""
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        removed = []
        for entry in reversed(entries):
            if total <= self.max_bytes:
                break
            if entry.key == keep:
                continue
            shutil.rmtree(entry.folder, ignore_errors=True)
            total -= entry.bytes
            removed.append(entry.key)
        if removed:
            logger.info("cache over %d bytes: evicted %d entries", self.max_bytes, len(removed))
        return removed

    def clear(self) -> int:
        """Remove every entry; returns how many."""
        entries = self.entries()
        for entry in entries:
            shutil.rmtree(entry.folder, ignore_errors=True)
        return len(entries)


def write_cam(path: Path, cam: Any) -> Path:
    """A ``TiledCam`` as one ``.npz`` (the map, its fields as JSON), written atomically."""
    meta = {
        "method": cam.method,
        "target_class": int(cam.target_class),
        "target_label": cam.target_label,
        "scale": [float(v) for v in cam.scale],
        "level": int(cam.level),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"cam": np.asarray(cam.cam, np.float32), "meta": np.array(json.dumps(meta))}
    return write_atomically(path, lambda handle: np.savez_compressed(handle, **arrays))


def read_cam(path: Path) -> Any:
    """The ``TiledCam`` stored by :func:`write_cam`."""
    from napari_pathreview.inference.tiling import TiledCam

    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        cam = np.asarray(stored["cam"], np.float32)
    return TiledCam(
        cam,
        meta["method"],
        meta["target_class"],
        meta["target_label"],
        tuple(meta["scale"]),
        meta["level"],
    )


def cam_key(fields: dict[str, Any]) -> str:
    """The name a CAM is stored under beside its slide's result: sha256 of ``fields``."""
    text = json.dumps(fields, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def slide_key(predictor: Any, source: Any, settings: Any) -> tuple[str, dict]:
    """:func:`cache_key` of a slide source (its fingerprint and the µm/px it is read with)."""
    return cache_key(source.fingerprint, predictor, settings, getattr(source, "um_per_px", None))


def cached_slide_cam(
    predictor: Any,
    source: Any,
    heat_grid: Any,
    settings: Any,
    target_index: int,
    method: str,
    cache: SlideCache | None,
    cancel: Any = None,
    cam_options: dict[str, Any] | None = None,
) -> Any:
    """:func:`slide_cam.iter_slide_cam`, served from ``cache`` when the same slide, model,
    settings, method, target class and CAM options were explained before.

    Stored beside the slide's cached result (its key covers the slide, model, preprocessing,
    stain, TTA and tiling), so it goes when that result goes. A hit yields only the
    ``TiledCam``.
    """
    from napari_pathreview.inference.slide_cam import cam_cache_fields, iter_slide_cam
    from napari_pathreview.inference.tiling import TiledCam

    steps = iter_slide_cam(
        predictor, source, heat_grid, settings, target_index, method, cancel, None, cam_options
    )
    if cache is None:
        yield from steps
        return
    key, _ = slide_key(predictor, source, settings)
    name = cam_key(cam_cache_fields(predictor, method, target_index, cam_options or {}))
    hit = cache.get_cam(key, name)
    if hit is not None:
        logger.info("slide CAM served from cache %s/%s", key[:12], name[:12])
        yield hit
        return
    for item in steps:
        if isinstance(item, TiledCam):
            cache.put_cam(key, name, item)
        yield item


def cached_slide(
    predictor: Any, source: Any, settings: Any, cache: SlideCache | None, cancel: Any = None
) -> Any:
    """:func:`slides.iter_slide`, served from ``cache`` when the same run was done before.

    Yields the same events; a cache hit yields only the ``SlideResult`` (nothing to stream).
    """
    from napari_pathreview.inference.slides import SlideResult, iter_slide

    if cache is None:
        yield from iter_slide(predictor, source, settings, cancel)
        return
    key, fields = slide_key(predictor, source, settings)
    hit = cache.get(key)
    if hit is not None:
        logger.info("slide result served from cache %s", key[:12])
        yield hit
        return
    fields = {**fields, "slide_path": str(getattr(source, "path", "")), "cached_at": time.time()}
    for item in iter_slide(predictor, source, settings, cancel):
        if isinstance(item, SlideResult):
            cache.put(key, item, fields)
        yield item
