"""Slide inference throughput: our engine vs the bare model forward vs TIAToolbox, one run.

Three ways over the same generated slide, model and tile grid (matched to the model's µm/px):

1. ours, end to end: tissue detection, threaded tile reading + area resize, batching, forward
   (``inference.slides.predict_slide``); and again with every tile quality-checked in the
   reader threads (``inference.slide_qc``, as ``predict-slides`` runs by default);
2. the bare model forward on the same tiles, already extracted into memory and normalised
   (the ceiling: goal ours ≥ 0.85× of it, i.e. reading hidden behind compute);
3. TIAToolbox's ``PatchPredictor`` with the same weights (our resnet18 exported to its
   ``CNNModel`` layout; the probabilities are compared) on the same tiles, run as a subprocess
   in its own venv (``--tia-python``; it cannot share ours), and WSInfer when it imports
   (goal: ours ≥ 2× faster).

``--big`` also writes a sparse 100,000² pyramid (30 GB of pixels, mostly empty tiles) with
tissue in one corner and prints the peak RSS of a run over it: memory must stay bounded by
the prefetch queue, not grow with the slide.

    python benchmarks/slide_inference.py [--edge 4096] [--arch resnet18] [--input 128]
        [--device auto] [--batch 32] [--repeats 3] [--big] [--tia-python VENV/bin/python]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import add_slide_options, parse_sized, register_random_model, sync


def _tissue_image(edge: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((edge, edge, 3), 238, np.uint8)
    yy, xx = np.mgrid[0:edge, 0:edge]
    tissue = ((yy - edge / 2) / (0.45 * edge)) ** 2 + ((xx - edge / 2) / (0.45 * edge)) ** 2 < 1
    texture = np.array([175, 105, 160], np.float32) + 25 * np.sin(xx[..., None] / 7.0)
    image[tissue] = np.clip(texture + rng.normal(0, 20, (edge, edge, 3)), 0, 215)[tissue]
    return image


def _predictor(arch: str, side: int, device: str, batch: int, um: float):
    from napari_pathreview.inference.predictor import Predictor
    from napari_pathreview.registry import ModelRegistry

    preprocess = {"input_size": [3, side, side], "pixel_size": um, "pixel_unit": "um"}
    ref = register_random_model(ModelRegistry(), "bench-slide", arch, side, preprocess=preprocess)
    return Predictor.from_registry(ref, device=device, batch_size=batch, qc=False)


def _with_tile_qc(predictor, path: Path, settings) -> float:
    """Seconds of one end-to-end run with each tile quality-checked (``predict-slides``' way)."""
    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slides import predict_slide

    predictor.qc = True
    try:
        sync(predictor)
        start = time.perf_counter()
        result = predict_slide(predictor, as_slide(path), settings)
        sync(predictor)
        assert result.tile_qc is not None
        return time.perf_counter() - start
    finally:
        predictor.qc = False


def _extract(predictor, source, settings) -> list[np.ndarray]:
    """The exact tiles our engine classifies, read up front (not timed)."""
    from napari_pathreview.inference.prefetch import TileReader
    from napari_pathreview.inference.slide_grid import model_um_per_px, plan_grid, tissue_cells
    from napari_pathreview.inference.tissue import slide_tissue

    grid = plan_grid(source, predictor.spec.hw, settings, model_um_per_px(predictor.card, settings))
    cells = tissue_cells(grid, slide_tissue(source), settings.min_tissue)
    reader = TileReader(source, grid)
    return [reader(int(r), int(c)) for r, c in cells]


def _bare(predictor, tiles: list[np.ndarray]) -> float:
    """Seconds for the bare forward (inference_mode, channels_last, AMP) over prepared tiles."""
    import torch

    size = predictor.batch_size
    with torch.inference_mode():
        batches = [predictor.prepare(tiles[i : i + size]) for i in range(0, len(tiles), size)]
        batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
        predictor._forward(batches[0])  # warm-up
        sync(predictor)
        start = time.perf_counter()
        for x in batches:
            predictor._forward(x).cpu()
        sync(predictor)
    return time.perf_counter() - start


def _tia_state_dict(model) -> dict:
    """Our timm resnet's weights under TIAToolbox ``CNNModel`` names (torchvision layout).

    ``CNNModel(backbone)`` is ``Sequential(conv1, bn1, relu, maxpool, layer1..4)`` as
    ``feat_extract`` plus a ``classifier`` Linear: the same tensors, other names.
    """
    prefix = {"conv1": "feat_extract.0", "bn1": "feat_extract.1", "fc": "classifier"}
    prefix.update({f"layer{i}": f"feat_extract.{3 + i}" for i in range(1, 5)})
    out = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        start = next(i for i, part in enumerate(parts) if part in prefix)
        name = ".".join([prefix[parts[start]], *parts[start + 1 :]])
        out[name] = value.detach().cpu().contiguous()
    return out


def _tia_prepare(predictor, tiles: list[np.ndarray], args, tmp: Path, slide: Path) -> str:
    """Write the tiles, the exported weights and the runner's config; returns a reason not to.

    An empty string means ready; otherwise why TIAToolbox is skipped.
    """
    import json
    import os

    from safetensors.torch import save_file

    args.tia_python = args.tia_python or os.environ.get("PATHREVIEW_TIA_PYTHON")
    if not args.tia_python:
        return (
            "skipped: pass --tia-python /tmp/tia-venv/bin/python (tiatoolbox pins older "
            "torch/numpy and adds opencv-python, so it lives in its own venv)"
        )
    if args.arch != "resnet18":
        return "skipped: the weight export is written for resnet18"
    unusable = _tia_unusable(args.tia_python)
    if unusable:
        return unusable
    np.save(tmp / "tiles.npy", np.stack(tiles))
    save_file(_tia_state_dict(predictor.model), str(tmp / "tia.safetensors"))
    config = {
        "tiles": str(tmp / "tiles.npy"),
        "weights": str(tmp / "tia.safetensors"),
        "backbone": args.arch,
        "num_classes": len(predictor.classes),
        "mean": list(predictor.spec.mean),
        "std": list(predictor.spec.std),
        "batch": args.batch,
        "workers": 0,
        "device": "cuda" if predictor.device.type == "cuda" else "cpu",
        "repeats": 1,  # the benchmark interleaves its repeats with ours
        "slide": str(slide),
        "mpp": args.um,
        "side": args.input,
    }
    (tmp / "tia.json").write_text(json.dumps(config), encoding="utf-8")
    return ""


def _tia_unusable(python: str) -> str:
    """Why ``python`` cannot run the TIAToolbox runner ("" when it can): checked before timing."""
    import subprocess

    try:
        done = subprocess.run(
            [python, "-c", "import tiatoolbox, safetensors"], capture_output=True, text=True
        )
    except OSError as error:
        return f"skipped: --tia-python {python} does not run ({error.strerror})"
    if done.returncode != 0:
        missing = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "import failed"
        return f"skipped: {python} cannot import tiatoolbox/safetensors ({missing})"
    return ""


def _tia_run(args, tmp: Path) -> dict:
    """One run of ``_tiatoolbox_runner.py`` in TIAToolbox's venv (patch and WSI modes)."""
    import json
    import subprocess

    runner = Path(__file__).with_name("_tiatoolbox_runner.py")
    done = subprocess.run(
        [args.tia_python, str(runner), str(tmp / "tia.json"), str(tmp / "tia_out.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"TIAToolbox runner failed: {done.stderr.strip()[-500:]}")
    return json.loads((tmp / "tia_out.json").read_text(encoding="utf-8"))


def _tia_report(runs: list[dict], predictor, tiles, ours_rate: float, bare: float) -> None:
    """Print TIAToolbox's best tiles/s per mode, our ratio, and the probability check."""
    patch = min(run["patch"]["seconds"] for run in runs)
    ours_p = _our_probabilities(predictor, tiles)
    theirs = np.asarray(runs[-1]["patch"]["probabilities"], np.float32).reshape(ours_p.shape)
    diff = float(np.abs(ours_p - theirs).max())
    rate = len(tiles) / patch
    print(
        f"{'TIAToolbox PatchPredictor, same tiles':<44}{rate:>10.1f}"
        f"{rate * bare / len(tiles):>9.2f}x  (max |p_ours - p_tia| = {diff:.1g})"
    )
    wsi = [run["wsi"] for run in runs if "wsi" in run]
    if wsi:
        best = min(wsi, key=lambda w: w["seconds"])
        wrate = best["n_tiles"] / best["seconds"]
        print(
            f"{'TIAToolbox PatchPredictor, WSI mode':<44}{wrate:>10.1f}"
            f"{wrate * bare / len(tiles):>9.2f}x  ({best['n_tiles']} tiles, its mask)"
        )
        print(f"ours / TIAToolbox WSI mode (both read the slide): {ours_rate / wrate:.2f}x")
    print(
        f"ours / TIAToolbox same tiles (ours also reads): {ours_rate / rate:.2f}x "
        f"(goal >= 2x); tiatoolbox {runs[-1]['tiatoolbox']}, torch {runs[-1]['torch']}"
    )


def _our_probabilities(predictor, tiles: list[np.ndarray]) -> np.ndarray:
    from napari_pathreview.inference.prefetch import forward_tiles

    return forward_tiles(predictor, tiles)


def _wsinfer() -> str:
    try:
        import wsinfer  # noqa: F401
    except ImportError:
        return "not installed (wsinfer 0.6 pins old torch/timm; not a dependency)"
    return "installed, but the comparison harness is not written yet"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _write_sparse_slide(path: Path, edge: int = 100_000, tissue_edge: int = 2048) -> Path:
    """A ``edge``² pyramid: blank deflate tiles everywhere, real tissue in one corner."""
    import cv2
    import tifffile

    tile = 512
    tissue = _tissue_image(tissue_edge, seed=3)
    blank = np.full((tile, tile, 3), 238, np.uint8)

    def tiles(level_edge: int, factor: int):
        part = cv2.resize(tissue, (tissue_edge // factor,) * 2, interpolation=cv2.INTER_AREA)
        for r in range(0, level_edge, tile):
            for c in range(0, level_edge, tile):
                if r < part.shape[0] and c < part.shape[1]:
                    piece = blank.copy()
                    src = part[r : r + tile, c : c + tile]
                    piece[: src.shape[0], : src.shape[1]] = src
                    yield piece
                else:
                    yield blank

    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        factors = [1, 4, 16, 64]
        for index, factor in enumerate(factors):
            level_edge = edge // factor
            writer.write(
                tiles(level_edge, factor),
                shape=(level_edge, level_edge, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                compression="deflate",
                photometric="rgb",
                subifds=len(factors) - 1 if index == 0 else None,
                subfiletype=1 if index else 0,
                resolution=(1e4 / (0.25 * factor),) * 2,
                resolutionunit="CENTIMETER",
            )
    return path


#: The sizes a run takes unless given: full, and with --quick (explicit flags win over both).
SIZES = {"edge": 4096, "input": 128, "batch": 32, "repeats": 3}
QUICK_SIZES = {"edge": 1024, "input": 64, "batch": 16, "repeats": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with --edge/--input/--batch/--repeats filled from --quick's sizes or the
    full ones only where they were not given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slide_options(parser, SIZES, QUICK_SIZES)
    parser.add_argument("--workers", type=int, default=4, help="tile reader threads")
    parser.add_argument("--big", action="store_true", help="also the sparse 100k² slide")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller defaults: a 1024² slide, 64 px input, batch 16, once; "
        "--edge/--input/--batch/--repeats given explicitly still win",
    )
    parser.add_argument(
        "--tia-python",
        default=None,
        help="python of a venv with tiatoolbox (or $PATHREVIEW_TIA_PYTHON)",
    )
    return parse_sized(parser, argv, SIZES, QUICK_SIZES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import os

    from napari_pathreview.inference.layer_slide import as_slide
    from napari_pathreview.inference.slides import SlideSettings, predict_slide
    from napari_pathreview.io.pyramid import write_pyramidal_tiff

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PATHREVIEW_HOME"] = tmp
        path = write_pyramidal_tiff(
            _tissue_image(args.edge),
            Path(tmp) / "slide.tif",
            tile=256,
            n_levels=4,
            microns_per_pixel=0.25,
        )
        predictor = _predictor(args.arch, args.input, args.device, args.batch, args.um)
        settings = SlideSettings(batch_size=args.batch, read_workers=args.workers)
        tiles = _extract(predictor, as_slide(path), settings)
        predict_slide(predictor, as_slide(path), settings)  # warm-up (cuDNN, caches)
        ours_times, bare_times, qc_times = [], [], []
        tia_skip = _tia_prepare(predictor, tiles, args, Path(tmp), path)
        tia_runs: list[dict] = []
        for _ in range(args.repeats):  # interleaved, best of N: load from others hits all
            sync(predictor)
            start = time.perf_counter()
            result = predict_slide(predictor, as_slide(path), settings)
            sync(predictor)
            ours_times.append(time.perf_counter() - start)
            qc_times.append(_with_tile_qc(predictor, path, settings))
            bare_times.append(_bare(predictor, tiles))
            if not tia_skip:
                tia_runs.append(_tia_run(args, Path(tmp)))
        ours, bare = min(ours_times), min(bare_times)
        n = len(result.tile_probabilities)
        print(
            f"slide {args.edge}² @0.25 µm/px, {args.arch} {args.input}px @{args.um} µm/px, "
            f"device {predictor.device}, batch {args.batch}, {args.workers} readers"
        )
        print(f"{'way':<44}{'tiles/s':>10}{'vs bare':>10}")
        print(
            f"{'ours end to end (tissue+read+resize+model)':<44}{n / ours:>10.1f}"
            f"{bare / ours:>9.2f}x  (goal >= 0.85x)"
        )
        print(
            f"{'ours with per-tile QC (blur, pen, exposure)':<44}{n / min(qc_times):>10.1f}"
            f"{bare / min(qc_times):>9.2f}x  ({ours / min(qc_times):.2f}x of ours without)"
        )
        print(f"{'bare forward on pre-extracted tiles':<44}{len(tiles) / bare:>10.1f}{1.0:>9.2f}x")
        if tia_runs:
            _tia_report(tia_runs, predictor, tiles, n / ours, bare)
        else:
            print(f"{'TIAToolbox PatchPredictor':<44}  {tia_skip}")
        print(f"{'WSInfer':<44}  {_wsinfer()}")
        print(f"tiles: {n} tissue of {result.grid.n_cells} cells; peak RSS {_peak_rss_mb():.0f} MB")
        if args.big:
            big = _write_sparse_slide(Path(tmp) / "sparse100k.tif")
            before = _peak_rss_mb()
            start = time.perf_counter()
            result = predict_slide(predictor, as_slide(big), settings)
            print(
                f"sparse 100000² slide ({100_000**2 * 3 / 1e9:.0f} GB of pixels): "
                f"{len(result.tile_probabilities)} tissue tiles in "
                f"{time.perf_counter() - start:.1f} s; peak RSS {_peak_rss_mb():.0f} MB "
                f"(before {before:.0f} MB)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
