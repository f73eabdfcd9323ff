"""A large image's tiled CAM (``tiled_cams.explain_tiled``): ours vs two passes vs the bare forward.

Over the same generated H&E-like image, model and tile grid (model-size tiles, 25 % overlap,
background skipped), timed in one run, best of ``--repeats`` interleaved:

1. ours: Grad-CAM per tile batch, each tile weighted by P(target) read from Grad-CAM's own
   forward (``tiled_cams.tile_cams``: one forward per tile), Hann-blended at full resolution;
2. the two-pass way it replaced: the same, but each batch is classified first
   (``Predictor.probabilities``) and Grad-CAM runs it again;
3. the bare model forward over the same tissue tiles, pre-extracted and normalised (fp32, as
   Grad-CAM runs it: the floor one forward per tile costs).

The target class is given, as the Analyze dock and ``predict`` give it. With ``--no-target``
the class is decided from the tiles (the decision on their mean probability): ours takes it
from the CAM pass itself (every class's CAM from its one forward per tile), the two-pass way
classifies every tile first, then explains the decided class.

    python benchmarks/tiled_cam.py [--edge 1536] [--input 128] [--batch 32] [--repeats 3]
        [--device auto] [--quick] [--no-target]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import slide_inference as _slides  # the same image, model and device sync as its benchmark
from _bench import add_size, bare_forward_seconds, parse_sized, sync

_predictor, _tissue_image = _slides._predictor, _slides._tissue_image


SIZES = {"edge": 1536, "input": 128, "batch": 32, "repeats": 3}
QUICK_SIZES = {"edge": 512, "input": 64, "batch": 16, "repeats": 1}
OVERLAP = 0.25
TARGET = 1


def _tissue_tiles(predictor, image: np.ndarray, tile: int) -> list[np.ndarray]:
    """The tiles the tiled CAM explains (the tiled prediction's tissue tiles), not timed."""
    from napari_pathreview.inference.tiling import predict_tiled

    origins = predict_tiled(predictor, image, tile_size=tile, overlap=OVERLAP).tile_origins
    return [image[r : r + tile, c : c + tile] for r, c in origins]


def _two_pass(predictor):
    """The explainer before: classify the batch, then Grad-CAM it (two forwards per tile)."""
    from napari_pathreview.explain.cams import compute_cam

    def explain(rgbs):
        probs = predictor.probabilities(rgbs)[:, TARGET]
        x = predictor.prepare(rgbs).detach().clone()
        return compute_cam(predictor.model, x, "gradcam", target_class=TARGET), probs

    return explain


def _runs(predictor, image: np.ndarray, tiles: list[np.ndarray], tile: int, target: int | None):
    """(ours, the two-pass way, its row name): each a call making the stitched CAM."""
    from napari_pathreview.inference.tiled_cams import explain_tiled

    kwargs = {"target_class": target, "tile_size": tile, "overlap": OVERLAP}

    def ours():
        return explain_tiled(predictor, image, "gradcam", **kwargs)

    if target is None:

        def decide_then_explain():  # the first pass classifies every tissue tile
            decided = predictor.target_index(None, predictor.probabilities(tiles).mean(axis=0))
            return explain_tiled(predictor, image, "gradcam", **{**kwargs, "target_class": decided})

        return ours, decide_then_explain, "two-pass: decide the class, then Grad-CAM (before)"

    def two_pass():
        return explain_tiled(predictor, image, "gradcam", explainer=_two_pass(predictor), **kwargs)

    return ours, two_pass, "two-pass: classify, then Grad-CAM (before)"


def _forwards(predictor, run) -> tuple[int, object]:
    """Tiles put through the model by ``run()`` (a forward hook), and its result."""
    seen: list[int] = []
    hook = predictor.model.register_forward_hook(lambda m, i, out: seen.append(out.shape[0]))
    try:
        result = run()
    finally:
        hook.remove()
    return sum(seen), result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, text in (
        ("edge", "image edge (px)"),
        ("input", "model input side = tile edge (px)"),
        ("batch", "tiles per forward"),
        ("repeats", "interleaved repeats (best of)"),
    ):
        add_size(parser, key, text, SIZES, QUICK_SIZES)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="a 512² image, 64 px input, once")
    parser.add_argument(
        "--no-target", action="store_true", help="no target class: decided from the tiles"
    )
    return parse_sized(parser, argv, SIZES, QUICK_SIZES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PATHREVIEW_HOME"] = tmp
        image = _tissue_image(args.edge)
        predictor = _predictor(args.arch, args.input, args.device, args.batch, 0.5)
        tiles = _tissue_tiles(predictor, image, args.input)
        target = None if args.no_target else TARGET
        ours, two_pass, two_name = _runs(predictor, image, tiles, args.input, target)
        counted = {"ours": _forwards(predictor, ours)[0], "two": _forwards(predictor, two_pass)[0]}
        times: dict[str, list[float]] = {"ours": [], "two": [], "bare": []}
        maps = {}
        for _ in range(args.repeats):  # interleaved, best of N
            for key, run in (("ours", ours), ("two", two_pass)):
                sync(predictor)
                start = time.perf_counter()
                maps[key] = run().cam
                sync(predictor)
                times[key].append(time.perf_counter() - start)
            times["bare"].append(bare_forward_seconds(predictor, tiles))
        best = {key: min(value) for key, value in times.items()}
        print(
            f"image {args.edge}², {args.arch} {args.input}px, device {predictor.device}, batch "
            f"{args.batch}; {len(tiles)} tissue tiles of {args.input}px at {OVERLAP:.0%} overlap; "
            f"target class {'decided from the tiles' if target is None else target}"
        )
        print(f"{'tiled CAM (Grad-CAM)':<50}{'tiles fwd':>10}{'seconds':>9}{'vs bare':>10}")
        rows = (
            ("ours: one forward per tile (Grad-CAM's logits)", counted["ours"], best["ours"]),
            (two_name, counted["two"], best["two"]),
            ("bare forward over the same tiles (reference)", len(tiles), best["bare"]),
        )
        for name, forwards, seconds in rows:
            print(f"{name:<50}{forwards:>10}{seconds:>9.3f}{seconds / best['bare']:>9.2f}x")
        diff = float(np.abs(maps["ours"] - maps["two"]).max())
        print(
            f"ours / two-pass: {best['ours'] / best['two']:.2f}x the time; "
            f"max |map difference| {diff:.1g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
