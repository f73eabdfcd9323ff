"""Whole-slide inference at the model's own magnification, streamed batch by batch.

The slide is tiled on the grid :func:`~.slide_grid.plan_grid` lays out at the µm/px the model
was trained at (its settings, grid and resolution rules live in :mod:`.slide_grid` and are
re-exported here), so a 0.5 µm/px model sees 0.5 µm/px on a 0.25 µm/px slide and on a
0.5 µm/px one alike. The quick low-resolution look of earlier versions survives only as the
explicitly named ``preview`` mode.

:func:`iter_slide` is a generator (the micro-sam/stardist pattern): it yields one
:class:`SlideStart` (so a viewer can show the empty heatmap at once), a :class:`SlideBatch` per
model batch, and a :class:`SlideResult`; once ``cancel`` is set it yields
``Progress(cancelled=True)`` and stops, as ``Predictor.iter_predict`` does. Reading and
decoding run in a thread pool ahead of the model (:mod:`.prefetch`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_pathreview.errors import ImageReadError, InvalidInputError
from napari_pathreview.inference.slide_grid import (
    MODES,
    SlideGrid,
    SlideScaleError,
    SlideSettings,
    model_um_per_px,
    plan_grid,
    run_um_per_px,
    tissue_cells,
    tissue_tiles,
)
from napari_pathreview.preprocessing import check_tileable

__all__ = [
    "MODES",
    "SlideBatch",
    "SlideGrid",
    "SlideResult",
    "SlideScaleError",
    "SlideSettings",
    "SlideStart",
    "iter_slide",
    "model_um_per_px",
    "plan_grid",
    "predict_slide",
    "slide_prediction",
    "tissue_cells",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlideStart:
    """The first event of a run: the grid and the tiles to come (show the empty map now)."""

    grid: SlideGrid
    classes: tuple[str, ...]
    model_ref: str
    n_tiles: int
    tissue: Any = None


@dataclass(frozen=True)
class SlideBatch:
    """One model batch: the cells it covered and their probabilities.

    Attributes:
        rows: Cell rows of the tiles (int array, length B).
        cols: Cell columns.
        probabilities: float32 B×C.
        done: Tissue tiles finished so far, of ``total``.
        tiles_per_s: Throughput since the model started.
        eta_s: Seconds left at that throughput.
    """

    rows: np.ndarray
    cols: np.ndarray
    probabilities: np.ndarray
    done: int
    total: int
    tiles_per_s: float
    eta_s: float

    @property
    def message(self) -> str:
        """Tiles done and throughput; no ETA: the Analyze status gives one for the whole run,
        and this stage's own (the tiles only, not the CAM after them) read as a second clock."""
        return f"{self.done}/{self.total} tiles, {self.tiles_per_s:.1f} tiles/s"


@dataclass(frozen=True)
class SlideResult:
    """A finished slide: probability maps, the tile table and slide-level aggregates.

    Attributes:
        prob_maps: float32 C×rows×cols (0 where no tile was classified; see ``coverage``).
        coverage: bool rows×cols, True where a tissue tile was classified.
        tile_rows / tile_cols: cells of the classified tiles; ``tile_probabilities`` T×C.
        aggregate: ``{"mean"|"max"|"topk_mean": {class: p}}`` over tissue tiles.
        tissue_area_mm2: From the tissue mask (NaN without a scale).
        bag: A patch MIL model's decision over all tiles as one bag (``slide_mil.SlideBag``;
            also ``aggregate["mil"]``), else None.
        tile_qc: uint8 per classified tile, its failed QC checks as bits over
            ``slide_qc.TILE_CHECKS``; None when QC did not run (``slide_qc.slide_quality``
            makes the slide's verdict of it).
        cached: Read back from the slide cache (``cache.read_result``), not computed now:
            ``seconds`` and ``tiles_per_s`` are then those of the run that stored it.
    """

    grid: SlideGrid
    classes: tuple[str, ...]
    model_ref: str
    prob_maps: np.ndarray
    coverage: np.ndarray
    tile_rows: np.ndarray
    tile_cols: np.ndarray
    tile_probabilities: np.ndarray
    aggregate: dict[str, dict[str, float]]
    tissue_area_mm2: float
    n_failed: int = 0
    tiles_per_s: float = 0.0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    bag: Any = None
    tile_qc: np.ndarray | None = None
    cached: bool = False

    @property
    def scale(self) -> tuple[float, float]:
        """Level-0 pixels per map cell (the napari layer's ``scale``)."""
        return self.grid.cell

    @property
    def translate(self) -> tuple[float, float]:
        """Centre of cell (0, 0) in level-0 pixels (the napari layer's ``translate``)."""
        return self.grid.translate


def _aggregate(probs: np.ndarray, classes: Sequence[str], top_k: int) -> dict:
    from napari_pathreview.inference.tiling import _aggregate as aggregate

    return aggregate(probs, classes, top_k)


def iter_slide(
    predictor: Any,
    source: Any,
    settings: SlideSettings | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[Any]:
    """Classify a slide tile by tile: ``SlideStart``, ``SlideBatch``…, ``SlideResult``.

    Args:
        predictor: An ``inference.Predictor`` (its stain, TTA and device settings apply).
        source: A ``SlideSource`` (``io.open_slide``) or :class:`ArraySlide`.
        settings: Tiling settings (defaults: matched mode, no overlap).
        cancel: Set it to stop before the next batch (yields ``Progress(cancelled=True)``).

    Each tile read is quality-checked when ``predictor.qc`` is on (``slide_qc``: under the
    card's thresholds, on the array the model gets; flagged, never dropped).

    Raises:
        SlideScaleError: no physical scale on the card or slide (checked before any reading).
        ImageReadError: more than ``max_failed`` of the tiles could not be read.
    """
    from napari_pathreview.inference import slide_mil
    from napari_pathreview.inference.prefetch import TileReader, run_batches
    from napari_pathreview.inference.progress import Progress

    settings = settings or SlideSettings()
    start = time.perf_counter()
    plan = _plan_slide(predictor, source, settings)
    mil_model = slide_mil.patch_mil_of(predictor)
    tap = slide_mil.EmbeddingTap(mil_model, predictor.tta) if mil_model is not None else None
    classes = tuple(predictor.classes)
    yield SlideStart(plan.grid, classes, predictor.model_ref, len(plan.cells), plan.tissue)
    maps = _Maps(plan.grid, classes)
    tally = _Tally(source, len(plan.cells), settings.max_failed)
    reader = TileReader(source, plan.grid, predictor.qc_config if predictor.qc else None)
    with tap if tap is not None else contextlib.nullcontext():
        for batch in run_batches(predictor, reader, plan.cells, settings, cancel):
            if batch is None:
                yield Progress(tally.done, tally.total, "cancelled", cancelled=True)
                return
            tally.count(batch)
            maps.add(batch)
            yield tally.event(batch)
    if not maps.probs:  # every tile failed, too few to pass ``max_failed``
        raise ImageReadError(f"{getattr(source, 'path', 'slide')}: no tile could be read")
    result = maps.result(
        predictor.model_ref,
        settings,
        tissue_area_mm2=plan.tissue.area_mm2 if plan.tissue is not None else float("nan"),
        n_failed=tally.failed,
        model_seconds=time.perf_counter() - tally.started,
        seconds=time.perf_counter() - start,
    )
    yield _with_mil_bag(result, mil_model, tap) if tap is not None else result


@dataclass(frozen=True)
class _SlidePlan:
    """What a run reads, settled before the model starts: the grid, tissue mask and cells."""

    grid: SlideGrid
    tissue: Any
    cells: np.ndarray


def _plan_slide(predictor: Any, source: Any, settings: SlideSettings) -> _SlidePlan:
    """Lay out the tiles to classify, refusing a model that cannot tile, a slide or card with
    no scale, and a slide with no tissue tile here, before the model reads anything."""
    from napari_pathreview.inference import slide_mil

    check_tileable(predictor.spec, predictor.model_ref)
    model_um = run_um_per_px(predictor.card, settings)
    grid = plan_grid(source, slide_mil.tile_size_of(predictor), settings, model_um)
    tissue, cells = tissue_tiles(source, grid, settings)
    if not len(cells):
        raise NoTissueError(_no_tissue_message(source, grid, tissue, settings))
    return _SlidePlan(grid, tissue, cells)


class _Tally:
    """Tiles done and failed so far: the batches' progress and throughput, and the point at
    which too many unreadable tiles mean a corrupt or vanished file rather than bad luck."""

    def __init__(self, source: Any, total: int, max_failed: float) -> None:
        self.source, self.total = source, total
        self.limit = max(2, max_failed * total)
        self.done = self.failed = 0
        self.started = time.perf_counter()  # the model's start: throughput excludes planning

    def count(self, batch: Any) -> None:
        """Add a batch's tiles; raise ``ImageReadError`` once too many could not be read."""
        self.failed += batch.failed
        if self.failed > self.limit:
            raise ImageReadError(
                f"{getattr(self.source, 'path', 'slide')}: {self.failed} tiles could not be "
                f"read (last error: {batch.error}); the file may be corrupt or gone."
            )
        self.done += len(batch.rows) + batch.failed

    def event(self, batch: Any) -> SlideBatch:
        """The :class:`SlideBatch` a viewer shows for ``batch``, with the run's rate and ETA."""
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return SlideBatch(
            batch.rows, batch.cols, batch.probabilities, self.done, self.total, rate, eta
        )


def _with_mil_bag(result: SlideResult, mil_model: Any, tap: Any) -> SlideResult:
    """A patch MIL model decides the slide over all its tiles as one bag (``aggregate["mil"]``);
    the tile mean stands when the tapped embeddings no longer line up with the tiles."""
    from napari_pathreview.inference import slide_mil

    bag = slide_mil.pool_slide(mil_model, tap.embeddings())
    if bag is not None and len(bag.attention) == len(result.tile_probabilities):
        mil = dict(zip(result.classes, map(float, bag.probabilities), strict=True))
        return replace(result, bag=bag, aggregate={**result.aggregate, "mil": mil})
    if bag is not None:  # e.g. a forward retried after running out of memory
        logger.warning("tile embeddings do not match the tiles; slide decided by tile mean")
    return result


class NoTissueError(InvalidInputError):
    """No tile of the slide holds enough tissue to classify (a blank or tiny slide)."""


def _no_tissue_message(source: Any, grid: SlideGrid, tissue: Any, settings: SlideSettings) -> str:
    """Why a slide has no tile to classify, and what to change: said before the model runs."""
    where = getattr(source, "path", "slide")
    at = f" at {grid.um_per_px:.3g} µm/px" if grid.um_per_px else ""
    if tissue is None:  # tissue detection off: the grid itself is empty
        return f"{where}: the slide is smaller than one tile{at}"
    found = f" (tissue found: {tissue.area_mm2:.3g} mm²)" if np.isfinite(tissue.area_mm2) else ""
    return (
        f"{where}: no tile{at} holds {settings.min_tissue:.0%} tissue{found}: a blank slide, "
        "or tissue too small for the model's tiles. From the command line --min-tissue "
        "lowers that share and --no-tissue classifies every tile."
    )


class _Maps:
    """Accumulates batches into the probability maps and the tile table of a run."""

    def __init__(self, grid: SlideGrid, classes: tuple[str, ...]) -> None:
        self.grid, self.classes = grid, classes
        self.total = np.zeros((len(classes), *grid.shape), np.float32)
        self.covered = np.zeros(grid.shape, bool)
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.qc: list[np.ndarray] | None = []

    def add(self, batch: Any) -> None:
        if batch.qc is None:
            self.qc = None
        if len(batch.rows):
            self.total[:, batch.rows, batch.cols] = batch.probabilities.T
            self.covered[batch.rows, batch.cols] = True
            self.rows.append(batch.rows)
            self.cols.append(batch.cols)
            self.probs.append(batch.probabilities)
            if self.qc is not None:
                self.qc.append(batch.qc)

    def result(
        self,
        model_ref: str,
        settings: SlideSettings,
        *,
        tissue_area_mm2: float,
        n_failed: int,
        model_seconds: float,
        seconds: float,
    ) -> SlideResult:
        empty = np.zeros((0, len(self.classes)), np.float32)
        probs = np.concatenate(self.probs) if self.probs else empty
        return SlideResult(
            grid=self.grid,
            classes=self.classes,
            model_ref=model_ref,
            prob_maps=self.total,
            coverage=self.covered,
            tile_rows=np.concatenate(self.rows) if self.rows else np.zeros(0, int),
            tile_cols=np.concatenate(self.cols) if self.cols else np.zeros(0, int),
            tile_probabilities=probs.astype(np.float32),
            aggregate=_aggregate(probs, self.classes, settings.top_k),
            tissue_area_mm2=tissue_area_mm2,
            n_failed=n_failed,
            tiles_per_s=len(probs) / model_seconds if model_seconds > 0 else 0.0,
            seconds=seconds,
            settings=settings.cache_fields(),
            tile_qc=np.concatenate(self.qc) if self.qc else None,
        )


def predict_slide(
    predictor: Any, source: Any, settings: SlideSettings | None = None
) -> SlideResult:
    """:func:`iter_slide` run to the end."""
    result = None
    for item in iter_slide(predictor, source, settings):
        if isinstance(item, SlideResult):
            result = item
    assert result is not None
    return result


def slide_prediction(predictor: Any, result: SlideResult, path: str | None = None) -> Any:
    """The slide's decision, the one rule the Analyze dock and ``predict-slides`` share: a patch
    MIL model's own pooling of every tile (``aggregate["mil"]``), else the mean over tissue
    tiles, decided by the card's rule (``Predictor.to_prediction``: its threshold or argmax).

    Raises:
        InvalidInputError: No tissue tile was classified, so there is nothing to decide on.
    """
    probs = result.aggregate.get("mil") or result.aggregate.get("mean") or {}
    if not probs or not all(np.isfinite(float(v)) for v in probs.values()):
        raise InvalidInputError(
            "no tissue tile found in the image; check the image or untick tissue skipping."
        )
    values = np.array([float(probs[name]) for name in predictor.classes], dtype=np.float64)
    return predictor.to_prediction(values, path=path, seconds=float(result.seconds))
