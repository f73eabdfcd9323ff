"""The Analyze dock's slide CAM stage: ours vs the two-pass way vs the bare forward, one run.

Over the same generated slide, model and CAM plan (the heatmap's tiles at half-tile stride,
matched to the model's µm/px), timed in one run, best of ``--repeats`` interleaved:

1. ours (``slide_cam.iter_slide_cam``): reading, Grad-CAM per tile batch, each tile weighted by
   P(target) read from Grad-CAM's own forward, stitching;
2. the two-pass way it replaced: the same, but the tiles are classified first
   (``prefetch.forward_tiles``) and Grad-CAM runs them again;
3. the bare model forward over the same tiles, pre-extracted and normalised (the floor one
   forward per tile costs);
4. pressing Run again: the CAM served from the slide cache (``cache.cached_slide_cam``).

    python benchmarks/slide_cam.py [--edge 2048] [--input 128] [--batch 32] [--repeats 3]
        [--device auto] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import slide_inference as _slides
from _bench import add_slide_options, bare_forward_seconds, parse_sized, sync

# the same slide, model and device sync as its benchmark
_predictor, _tissue_image = _slides._predictor, _slides._tissue_image

SIZES = {"edge": 2048, "input": 128, "batch": 32, "repeats": 3}
QUICK_SIZES = {"edge": 768, "input": 64, "batch": 16, "repeats": 1}


def _cam_tiles(predictor, source, heat_grid, settings) -> list[np.ndarray]:
    """The tiles the slide CAM explains, read up front (not timed)."""
    from napari_pathreview.inference.prefetch import TileReader
    from napari_pathreview.inference.slide_cam import cam_grid
    from napari_pathreview.inference.slide_grid import model_um_per_px, tissue_cells
    from napari_pathreview.inference.tissue import slide_tissue

    grid = cam_grid(source, heat_grid, settings, model_um_per_px(predictor.card, settings))
    reader = TileReader(source, grid)
    cells = tissue_cells(grid, slide_tissue(source), settings.min_tissue)
    return [reader(int(r), int(c)) for r, c in cells]


def _two_pass(predictor, index: int):
    """The explainer before: classify the tiles, then Grad-CAM them (two forwards per tile)."""
    from napari_pathreview.explain.cams import compute_cam
    from napari_pathreview.inference.prefetch import forward_tiles

    spec = replace(predictor.spec, resize=None, crop="none")

    def explain(tiles, cancel):
        probs = forward_tiles(predictor, tiles)[:, index]
        x = predictor.prepare(tiles, spec).detach().clone()
        maps = compute_cam(predictor.model, x, "gradcam", target_class=index, cancel=cancel)
        return maps * probs[:, None, None]

    return explain


def _timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slide_options(parser, SIZES, QUICK_SIZES)
    parser.add_argument("--quick", action="store_true", help="a 768² slide, 64 px input, once")
    return parse_sized(parser, argv, SIZES, QUICK_SIZES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from napari_pathreview.inference.cache import SlideCache, cached_slide
    from napari_pathreview.inference.cache import cached_slide_cam as cached_cam
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slide_cam import iter_slide_cam
    from napari_pathreview.inference.slides import SlideSettings
    from napari_pathreview.inference.tiling import last_result
    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PATHREVIEW_HOME"] = tmp
        image = _tissue_image(args.edge)
        path = write_pyramidal_tiff(
            image, Path(tmp) / "slide.tif", tile=256, n_levels=4, microns_per_pixel=0.25
        )
        predictor = _predictor(args.arch, args.input, args.device, args.batch, args.um)
        settings = SlideSettings(batch_size=args.batch)
        source, cache = as_slide(path), SlideCache(Path(tmp) / "cache")
        heat = last_result(cached_slide(predictor, source, settings, cache))
        tiles = _cam_tiles(predictor, source, heat.grid, settings)
        cam_spec = replace(predictor.spec, resize=None, crop="none")  # tiles come at model size
        index = 1

        def ours():
            return last_result(iter_slide_cam(predictor, source, heat.grid, settings, index))

        def two_pass():
            explain = _two_pass(predictor, index)
            steps = iter_slide_cam(predictor, source, heat.grid, settings, index, explainer=explain)
            return last_result(steps)

        def cached():
            steps = cached_cam(predictor, source, heat.grid, settings, index, "gradcam", cache)
            return last_result(steps)

        cached()  # fills the cache (and warms up cuDNN / the readers)
        times: dict[str, list[float]] = {"ours": [], "two": [], "bare": [], "cached": []}
        for _ in range(args.repeats):  # interleaved, best of N
            sync(predictor)
            seconds, mine = _timed(ours)
            times["ours"].append(seconds)
            seconds, before = _timed(two_pass)
            times["two"].append(seconds)
            times["bare"].append(bare_forward_seconds(predictor, tiles, cam_spec))
            seconds, served = _timed(cached)
            times["cached"].append(seconds)
        best = {key: min(value) for key, value in times.items()}
        diff = float(np.abs(mine.cam - before.cam).max())
        print(
            f"slide {args.edge}² @0.25 µm/px, {args.arch} {args.input}px @{args.um} µm/px, "
            f"device {predictor.device}, batch {args.batch}; {len(tiles)} CAM tiles "
            f"({len(heat.tile_probabilities)} heatmap tiles)"
        )
        print(f"{'CAM stage (Grad-CAM)':<52}{'seconds':>9}{'vs bare forward':>17}")
        rows = (
            ("ours: one forward per tile (Grad-CAM's logits)", best["ours"]),
            ("two-pass: classify, then Grad-CAM (before)", best["two"]),
            ("Run again: served from the slide cache", best["cached"]),
            ("bare forward over the same tiles (reference)", best["bare"]),
        )
        for name, seconds in rows:
            print(f"{name:<52}{seconds:>9.3f}{seconds / best['bare']:>16.2f}x")
        stale = float(np.abs(served.cam - mine.cam).max())
        print(
            f"ours / two-pass: {best['ours'] / best['two']:.2f}x the time; max |map difference| "
            f"{diff:.1g}; cached vs computed now: {stale:.1g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
