"""Where a slide's tiles go: the settings of a slide run and the grid they give.

A slide is tiled at the µm/px recorded in the model card's preprocessing spec (the resolution
the model was trained at), whatever the slide's own levels are: each tile is read from the
nearest level at least as fine and shrunk with area interpolation (:func:`plan_grid` says which
level and how much). The grid is regular and exactly covers the slide: ``n`` cells per axis of
``extent / n`` level-0 pixels each, one tile centred on each cell, so a heatmap cell is a box
of the slide with no overhang and a napari layer with ``scale = cell`` lines up at every level.
Running the grid through a model is :mod:`.slides`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_pathreview.errors import InvalidInputError, SettingError
from napari_pathreview.inference.slide_qc import DEFAULT_MAX_FLAGGED
from napari_pathreview.setting_rules import COUNT, Rule, check_settings, positive, within

__all__ = [
    "MODES",
    "SlideGrid",
    "SlideScaleError",
    "SlideSettings",
    "model_um_per_px",
    "plan_grid",
    "tissue_cells",
]

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("matched", "preview")

MAX_ENLARGEMENT = 8.0
"""How much coarser than the model a slide may be in matched mode (tiles are enlarged)."""


#: each numeric setting's valid range and how an error states it (``SettingError`` carries
#: the field, so the CLI reports it under the flag typed: ``--mpp`` for ``slide_um_per_px``)
_SETTING_RANGES: dict[str, Rule] = {
    "overlap": within(0.0, 0.9),
    "min_tissue": within(0.0, 1.0),
    "batch_size": COUNT,
    "read_workers": COUNT,
    "prefetch": COUNT,
    "model_um_per_px": positive("a positive number (µm per pixel)"),
    "slide_um_per_px": positive("a positive number (µm per pixel)"),
    "preview_max_tiles": COUNT,
    "top_k": COUNT,
    "max_failed": within(0.0, 1.0),
    "qc_max_flagged": within(0.0, 1.0),
}
_OPTIONAL = frozenset({"batch_size", "model_um_per_px", "slide_um_per_px"})  # None: not set


class SlideScaleError(InvalidInputError):
    """The model card or the slide lacks the physical pixel size matched tiling needs."""


@dataclass(frozen=True)
class SlideSettings:
    """How a slide is tiled and run.

    Attributes:
        mode: "matched" (tile at the model's µm/px) or "preview" (the finest level needing at
            most ``preview_max_tiles`` tiles, no resampling: fast, not what the model learned).
        overlap: Fraction of a tile shared with each neighbour, in [0, 0.9].
        min_tissue: Least tissue fraction of a tile's box for it to be classified.
        tissue: Detect tissue and skip glass (off: every tile is classified).
        batch_size: Tiles per forward (None: the predictor's); halved on CUDA out-of-memory.
        read_workers: Threads reading and decoding tiles ahead of the model.
        prefetch: Decoded tiles kept ready, in batches.
        model_um_per_px: Overrides the card's resolution (for cards registered without one).
        slide_um_per_px: Overrides the slide's level-0 pixel size (for files without one).
        preview_max_tiles: Tile budget of the preview mode.
        top_k: Tiles averaged for the ``topk_mean`` aggregate.
        max_failed: Fraction of unreadable tiles above which the run stops.
        qc_max_flagged: Share of tissue tiles failing quality control above which the slide
            is flagged (``slide_qc``); the verdict is made from the tiles' stored checks, so
            it is not part of :meth:`cache_fields`.
    """

    mode: str = "matched"
    overlap: float = 0.0
    min_tissue: float = 0.25
    tissue: bool = True
    batch_size: int | None = None
    read_workers: int = 4
    prefetch: int = 2
    model_um_per_px: float | None = None
    slide_um_per_px: float | None = None
    preview_max_tiles: int = 100
    top_k: int = 5
    max_failed: float = 0.1
    qc_max_flagged: float = DEFAULT_MAX_FLAGGED

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError("mode", f"one of {', '.join(MODES)}", self.mode)
        check_settings(self, _SETTING_RANGES, _OPTIONAL)

    def cache_fields(self) -> dict[str, Any]:
        """The settings that change the result (not speed knobs): part of the cache key."""
        return {
            "mode": self.mode,
            "overlap": self.overlap,
            "min_tissue": self.min_tissue,
            "tissue": self.tissue,
            "model_um_per_px": self.model_um_per_px,
            "slide_um_per_px": self.slide_um_per_px,
            "preview_max_tiles": self.preview_max_tiles if self.mode == "preview" else None,
        }


@dataclass(frozen=True)
class SlideGrid:
    """Where the tiles are: a regular grid of cells covering level 0 exactly.

    Attributes:
        shape: (rows, cols) of cells = of the heatmap.
        cell: (row, col) level-0 pixels per cell (the heatmap layer's ``scale``).
        tile0: (row, col) level-0 pixels one tile covers (≥ cell; centred on its cell).
        level: Level tiles are read from.
        read_size: (row, col) pixels read from that level per tile.
        tile_size: (row, col) pixels the model gets (read tiles are area-resized to it).
        um_per_px: Resolution the model sees, None in preview mode without a slide scale.
        level0_shape: (height, width) of the slide's level 0.
        level0_um_per_px: The slide's level-0 pixel size the grid was planned with (None when
            unknown): the frame of everything drawn in level-0 pixels, e.g. ``tiles.geojson``.
    """

    shape: tuple[int, int]
    cell: tuple[float, float]
    tile0: tuple[float, float]
    level: int
    read_size: tuple[int, int]
    tile_size: tuple[int, int]
    um_per_px: float | None
    level0_shape: tuple[int, int]
    downsample: float = 1.0
    level0_um_per_px: float | None = None

    @property
    def n_cells(self) -> int:
        return self.shape[0] * self.shape[1]

    def box0(self, row: Any, col: Any) -> tuple[Any, Any, float, float]:
        """(y0, x0, h, w) of a cell's tile in level-0 pixels (may start before 0).

        ``row``/``col`` may be arrays: the origins come back as arrays.
        """
        y0 = (row + 0.5) * self.cell[0] - self.tile0[0] / 2
        x0 = (col + 0.5) * self.cell[1] - self.tile0[1] / 2
        return y0, x0, self.tile0[0], self.tile0[1]

    def read_origin(self, row: int, col: int) -> tuple[int, int]:
        """Top-left of a cell's tile in pixels of the read level."""
        y0, x0, _, _ = self.box0(row, col)
        return int(round(y0 / self.downsample)), int(round(x0 / self.downsample))

    @property
    def translate(self) -> tuple[float, float]:
        """napari ``translate`` that puts cell (0, 0) on level-0 pixels [0, cell)."""
        return ((self.cell[0] - 1.0) / 2.0, (self.cell[1] - 1.0) / 2.0)


def model_um_per_px(card: Any, settings: SlideSettings) -> float:
    """The resolution a model was trained at, from the settings' override or the card's spec."""
    if settings.model_um_per_px is not None:
        return float(settings.model_um_per_px)
    spec = getattr(card, "preprocess", None)
    value = getattr(spec, "um_per_px", None) if spec is not None else None
    if value is None:
        raise SlideScaleError(
            f"model {card.name}@{card.version} has no training resolution: its card's "
            "preprocess.pixel_size (µm per network-input pixel) is not set. Re-register it "
            "with the resolution (BreaKHis 40X = 0.492 µm/px), give it (CLI: --model-um-per-px; "
            "Analyze: Advanced slide settings ▸ 'model µm/px'), or use the explicitly coarse "
            "preview mode (--mode preview)."
        )
    return float(value)


def _slide_um(source: Any, settings: SlideSettings) -> float | None:
    if settings.slide_um_per_px is not None:
        return float(settings.slide_um_per_px)
    return getattr(source, "um_per_px", None)


def _read_level(downsamples: Sequence[float], level0_um: float, target_um: float) -> int:
    """The coarsest level still at least as fine as ``target_um`` (level 0 if none is)."""
    best = 0
    for index, down in enumerate(downsamples):
        # 1 % slack: level downsamples are rounded (4.0003); a 1 % enlargement is harmless
        if level0_um * float(down) <= target_um * 1.01:
            best = index if down >= downsamples[best] else best
    return best


def _cells(extent: int, stride: float) -> tuple[int, float]:
    n = max(1, math.ceil(extent / stride - 1e-9))
    return n, extent / n


def plan_grid(
    source: Any, tile_size: tuple[int, int], settings: SlideSettings, model_um: float | None
) -> SlideGrid:
    """The tile grid of a slide for a model taking ``tile_size`` inputs.

    Raises:
        SlideScaleError: matched mode on a slide that states no pixel size.
    """
    shapes = [tuple(int(v) for v in s) for s in source.level_shapes]
    downs = [float(d) for d in source.level_downsamples]
    height, width = shapes[0]
    slide_um = _slide_um(source, settings)
    if settings.mode == "preview":
        level = _preview_level(shapes, tile_size, settings)
        factor = (1.0, 1.0)
        target = None if slide_um is None else slide_um * downs[level]
        tile0 = (tile_size[0] * downs[level], tile_size[1] * downs[level])
    else:
        if slide_um is None:
            raise SlideScaleError(
                f"{getattr(source, 'path', 'the slide')} states no physical pixel size, so it "
                "cannot be tiled at the model's µm/px; give the scanner's µm per level-0 pixel "
                "(Analyze: 'pixel size (µm/px)' then Set; CLI: --mpp / --slide-um-per-px) or "
                "use the explicitly coarse preview mode (--mode preview)."
            )
        assert model_um is not None
        _check_enlargement(source, slide_um, model_um, tile_size)
        level = _read_level(downs, slide_um, model_um)
        target = model_um
        if slide_um > model_um * 1.01:
            logger.warning(
                "%s is scanned at %.3g µm/px, coarser than the model's %.3g µm/px: tiles are "
                "enlarged, so fine detail the model learned from is missing",
                getattr(source, "path", "the slide"),
                slide_um,
                model_um,
            )
        tile0 = (tile_size[0] * model_um / slide_um, tile_size[1] * model_um / slide_um)
        factor = (tile0[0] / downs[level] / tile_size[0], tile0[1] / downs[level] / tile_size[1])
    stride = (tile0[0] * (1.0 - settings.overlap), tile0[1] * (1.0 - settings.overlap))
    rows, cell_h = _cells(height, stride[0])
    cols, cell_w = _cells(width, stride[1])
    read = (max(1, round(factor[0] * tile_size[0])), max(1, round(factor[1] * tile_size[1])))
    return SlideGrid(
        shape=(rows, cols),
        cell=(cell_h, cell_w),
        tile0=tile0,
        level=level,
        read_size=(int(read[0]), int(read[1])),
        tile_size=tuple(tile_size),
        um_per_px=target,
        level0_shape=(height, width),
        downsample=downs[level],
        level0_um_per_px=slide_um,
    )


def _check_enlargement(
    source: Any, slide_um: float, model_um: float, tile_size: tuple[int, int]
) -> None:
    """Refuse a slide far coarser than the model: its tiles would be a few pixels blown up, and
    the grid (one cell per tile) could hold millions of cells, freezing the run."""
    factor = slide_um / model_um
    if factor <= MAX_ENLARGEMENT:
        return
    covers = min(tile_size) / factor
    raise SlideScaleError(
        f"{getattr(source, 'path', 'the slide')} is at {slide_um:.4g} µm/px, {factor:.3g}× "
        f"coarser than the model's {model_um:.3g} µm/px: a {min(tile_size)}-px tile would be "
        f"{covers:.2g} slide pixels enlarged (at most {MAX_ENLARGEMENT:g}× is tiled). If that "
        "is not the scanner's pixel size (a TIFF's default 72 dpi reads as 352.8 µm/px), give "
        "the right one (CLI: --mpp; Python: open_slide(path, um_per_px=…)); otherwise use a "
        "model trained nearer this resolution, or the explicitly coarse --mode preview."
    )


def _preview_level(
    shapes: Sequence[tuple[int, int]], tile_size: tuple[int, int], settings: SlideSettings
) -> int:
    for index, (height, width) in enumerate(shapes):
        if (height / tile_size[0]) * (width / tile_size[1]) <= settings.preview_max_tiles:
            return index
    return len(shapes) - 1


def run_um_per_px(card: Any, settings: SlideSettings) -> float | None:
    """The µm/px a run reads its tiles at: the model's (:func:`model_um_per_px`) when matched,
    None in preview mode (the level nearest the model's input, no resampling)."""
    return model_um_per_px(card, settings) if settings.mode == "matched" else None


def tissue_tiles(source: Any, grid: SlideGrid, settings: SlideSettings) -> tuple[Any, np.ndarray]:
    """The slide's tissue mask (None when the settings classify glass too) and the cells of
    ``grid`` a run reads: the one rule the heatmap and its CAM share, so they cover one area."""
    from napari_pathreview.inference.tissue import slide_tissue

    tissue = slide_tissue(source) if settings.tissue else None
    return tissue, tissue_cells(grid, tissue, settings.min_tissue if settings.tissue else 0.0)


def tissue_cells(grid: SlideGrid, tissue: Any, min_tissue: float) -> np.ndarray:
    """K×2 (row, col) of the cells whose tile box holds at least ``min_tissue`` tissue."""
    rows, cols = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
    cells = np.stack([rows.ravel(), cols.ravel()], axis=1)
    if tissue is None:
        return cells
    y0, x0, h, w = grid.box0(cells[:, 0], cells[:, 1])  # vectorised over all cells
    return cells[np.asarray(tissue.fraction(y0, x0, h, w)) >= min_tissue]
