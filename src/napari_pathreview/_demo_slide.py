"""The demo's whole slide: the bundled H&E pyramid, given a physical scale, analysed matched.

``sample_data/slides/he_pyramid.tif`` (1024² px, 3 levels) was written from a breast H&E
example tile without resolution tags, so on its own it cannot be tiled at a model's µm/px.
The tile ships with code first published on the AMIDA13 challenge site, whose slides were
scanned on an Aperio ScanScope XT at 40× (0.25 µm/px), and its nuclei (40–60 px across, i.e.
10–15 µm at that scale) agree; the demo states that scale (an explicit assumption, recorded in
``sample_data/ATTRIBUTION.md``, not a silent guess). It writes, once, a copy of the pyramid
whose TIFF resolution tags state 0.25 µm/px into ``$PATHREVIEW_HOME/demo`` (nothing is added to
``sample_data``), opens that, and runs the Analyze pipeline on it in matched mode: tiles at
the demo model's own µm/px, a heatmap of P(class) per tile and a CAM stitched at the model's
resolution.

Headless runs write ``slide_heatmap.png``, ``slide_tiles.csv`` and ``slide.json`` here and
(``demo``) ``slide_cam.png`` next to the other demo outputs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathreview._atomic import atomic_path
from napari_pathreview._sample_data import SAMPLES, sample_path

__all__ = [
    "DEMO_SLIDE_UM_PER_PX",
    "analyse_slide",
    "demo_slide_path",
    "overview",
    "write_slide_outputs",
]

#: Level-0 pixel size stated for the demo slide: the AMIDA13 scanner's 40× (see above).
DEMO_SLIDE_UM_PER_PX = 0.25
#: Overlays are drawn on the finest level whose long side is at most this.
OVERLAY_MAX_SIDE = 2048


def demo_slide_path(folder: Path | None = None) -> Path:
    """The bundled pyramid re-written with its µm/px in the resolution tags (made once)."""
    import tifffile

    from napari_pathreview.home import pathreview_home
    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    source = sample_path("pyramidal_tiff")
    folder = Path(folder) if folder is not None else pathreview_home() / "demo"
    target = folder / f"{Path(SAMPLES['pyramidal_tiff']).stem}_{DEMO_SLIDE_UM_PER_PX}um.tif"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    with tifffile.TiffFile(source) as tif:
        rgb = tif.series[0].levels[0].asarray()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:  # a concurrent demo never reads half a file
        write_pyramidal_tiff(
            rgb,
            partial,
            tile=256,
            n_levels=3,
            compression="deflate",
            microns_per_pixel=DEMO_SLIDE_UM_PER_PX,
        )  # lossless: the sample's pixels, not a second JPEG generation
    return target


def analyse_slide(
    path: Path, model_ref: str, device: str = "auto", cam_method: str = "gradcam"
) -> Any:
    """The Analyze pipeline on a slide in matched mode; returns its AnalysisResult."""
    from napari_pathreview._demo_samples import DemoError
    from napari_pathreview.inference.analysis import AnalysisRequest, AnalysisResult, analyse
    from napari_pathreview.io import load_image

    image = load_image(path)
    request = AnalysisRequest(model_ref=model_ref, device=device, cam_method=cam_method)
    for item in analyse(request, image.levels, modality=image.modality, um_per_px=image.um_per_px):
        if isinstance(item, AnalysisResult):
            return item
    raise DemoError(f"analysis of {path.name} produced no result")


def overview(levels: list[Any]) -> np.ndarray:
    """The finest level small enough to draw an overlay PNG on, as RGB uint8."""
    from napari_pathreview.io import to_rgb_uint8

    for level in levels:
        if max(level.shape[:2]) <= OVERLAY_MAX_SIDE:
            return to_rgb_uint8(np.asarray(level))
    return to_rgb_uint8(np.asarray(levels[-1]))


def _cell_index(n_out: int, extent: int, cell: float, n_cells: int) -> np.ndarray:
    """For each output pixel along an axis, the grid cell its centre falls in."""
    centres = (np.arange(n_out) + 0.5) * extent / n_out
    return np.clip((centres // cell).astype(int), 0, n_cells - 1)


def heatmap_png(levels: list[Any], tiled: Any, class_index: int, path: Path) -> Path:
    """The slide with P(class) per tile on top (turbo, transparent where not classified)."""
    from matplotlib import colormaps
    from PIL import Image

    from napari_pathreview.inference.heatmap import PROBABILITY_LIMITS

    rgb = overview(levels).astype(np.float32)
    grid = tiled.grid
    rows = _cell_index(rgb.shape[0], grid.level0_shape[0], grid.cell[0], grid.shape[0])
    cols = _cell_index(rgb.shape[1], grid.level0_shape[1], grid.cell[1], grid.shape[1])
    values = tiled.prob_maps[class_index][np.ix_(rows, cols)]
    covered = tiled.coverage[np.ix_(rows, cols)]
    low, high = PROBABILITY_LIMITS
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    colour = colormaps["turbo"](scaled)[..., :3] * 255.0
    alpha = np.where(covered, 0.5, 0.0)[..., None]
    blended = (1 - alpha) * rgb + alpha * colour
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).save(path)
    return path


def tiles_csv(tiled: Any, path: Path) -> Path:
    """One row per classified tile: its cell, level-0 box and class probabilities."""
    grid = tiled.grid
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "col", "y0", "x0", "height", "width", *(f"p_{c}" for c in tiled.classes)]
        )
        for row, col, probs in zip(
            tiled.tile_rows, tiled.tile_cols, tiled.tile_probabilities, strict=True
        ):
            y0, x0, h, w = grid.box0(int(row), int(col))
            writer.writerow(
                [
                    int(row),
                    int(col),
                    f"{y0:.1f}",
                    f"{x0:.1f}",
                    f"{h:.1f}",
                    f"{w:.1f}",
                    *(f"{float(p):.6f}" for p in probs),
                ]
            )
    return path


def write_slide_outputs(out: Path, path: Path, result: Any) -> dict[str, Path]:
    """The heatmap PNG, tile CSV and a JSON summary of a slide's analysis."""
    from napari_pathreview.io import load_image

    levels = list(load_image(path).levels)
    tiled = result.tiled
    class_index = len(tiled.classes) - 1  # the positive class, as the widget's heatmap
    paths = {
        "slide_heatmap": heatmap_png(levels, tiled, class_index, out / "slide_heatmap.png"),
        "slide_tiles": tiles_csv(tiled, out / "slide_tiles.csv"),
    }
    summary = {
        "slide": str(path),
        "model": f"{result.model_name}@{result.model_version}",
        "mode": "matched",
        "slide_um_per_px": DEMO_SLIDE_UM_PER_PX,
        "model_um_per_px": tiled.grid.um_per_px,
        "read_level": tiled.grid.level,
        "grid": list(tiled.grid.shape),
        "tiles": int(len(tiled.tile_probabilities)),
        "tiles_per_s": round(float(tiled.tiles_per_s), 2),
        "heatmap_class": tiled.classes[class_index],
        "label": str(result.prediction.label),
        "probabilities": result.probabilities,
        "aggregate": tiled.aggregate,
        "cam_method": result.cam.method if result.cam is not None else None,
        "seconds": round(float(result.seconds), 3),
    }
    paths["slide_summary"] = out / "slide.json"
    paths["slide_summary"].write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return paths
