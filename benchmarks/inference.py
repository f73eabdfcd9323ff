"""Inference and CAM benchmark: the pipeline against the bare model, measured side by side.

Rows (medians of interleaved repeats, one process, same model objects):

* pipeline images/s vs the bare forward at batch 32 (no stain, no TTA): decode-from-memory,
  resize, normalise, batching, probabilities and decisions; target overhead <= 15 %;
* the same from PNG files with QC on (decode + QC cost, for information);
* d4 TTA vs one view (target <= 8.5x);
* tiles/s of sliding-window inference over a 4096x4096 image (half background) vs the bare
  forward's tiles/s at the same batch size;
* seconds per image per CAM method (Predictor.explain, 224x224 image);
* batched Score-CAM vs pytorch-grad-cam's ScoreCAM with its default settings (target >= 3x),
  exact and with top-k channels, with the agreement of the maps.

Usage: ``python benchmarks/inference.py [--quick] [--device cpu|cuda|auto]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _bench import register_random_model

ROOT = Path(__file__).resolve().parents[1]
BREAKHIS = ROOT.parent / "shared" / "data" / "breakhis"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int, sync) -> dict[str, float]:
    """Median seconds of each function, run in turns so load drifts hit all alike."""
    for fn in fns.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            samples[key].append(_median_time(fn, 1, sync))
    return {k: statistics.median(v) for k, v in samples.items()}


def _images(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    from napari_pathreview.io import load_image

    files = sorted(BREAKHIS.glob("*.png"))
    if files:
        decoded = [load_image(f).data for f in files[:n]]
        return [decoded[i % len(decoded)] for i in range(n)]
    base = np.array([180, 110, 160], np.float32)
    return [
        np.clip(base + rng.normal(0, 30, (460, 700, 3)), 0, 210).astype(np.uint8) for _ in range(n)
    ]


def _register(arch: str, size: int, home: Path) -> str:
    from napari_pathreview.registry import ModelRegistry

    registry = ModelRegistry(home / "models")
    description = "benchmark model with random weights"
    return register_random_model(registry, f"bench-{arch}", arch, size, description=description)


def _predictor(ref: str, home: Path, device: str, **kw):
    from napari_pathreview.inference import Predictor
    from napari_pathreview.registry import ModelRegistry

    return Predictor.from_registry(
        ref, registry=ModelRegistry(home / "models"), device=device, **kw
    )


def bench_pipeline(pred, images, files, repeats, sync) -> list[tuple[str, str, str, str]]:
    """Pipeline vs bare forward at the predictor's batch size; d4 vs one view."""
    from napari_pathreview.inference import Predictor

    batch = pred.batch_size
    with torch.inference_mode():
        x = pred.prepare(images[:batch]).contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                n = min(batch, len(images) - start)
                with torch.autocast(
                    pred.device.type, dtype=pred.amp_dtype, enabled=pred.amp_dtype is not None
                ):
                    torch.softmax(pred.model(x[:n]).float(), 1).cpu()

    # d4 vs one view at the predictor's default batch size for the device (views count as inputs)
    d4 = Predictor(pred.model, pred.card, device=str(pred.device), tta="d4", qc=False)
    one = Predictor(pred.model, pred.card, device=str(pred.device), qc=False)
    qc_files = Predictor(pred.model, pred.card, device=str(pred.device), batch_size=batch, qc=True)
    t = _interleaved(
        {
            "bare": bare,
            "pipe": lambda: pred.predict(images),
            "files": lambda: qc_files.predict(files),
        },
        repeats,
        sync,
    )
    few = images[:8]
    t_d4 = _interleaved(
        {"one": lambda: one.predict(few), "d4": lambda: d4.predict(few)}, repeats, sync
    )
    n = len(images)
    overhead = t["pipe"] / t["bare"] - 1
    return [
        (f"bare forward (batch {batch})", f"{n / t['bare']:.1f} img/s", "1.00x", "reference"),
        (
            "pipeline, arrays, no stain/TTA/QC",
            f"{n / t['pipe']:.1f} img/s",
            f"{t['pipe'] / t['bare']:.2f}x",
            f"overhead {overhead * 100:+.1f}% (target <= 15%) {_verdict(overhead <= 0.15)}",
        ),
        (
            "pipeline, PNG files + QC",
            f"{n / t['files']:.1f} img/s",
            f"{t['files'] / t['bare']:.2f}x",
            "decode+QC incl.",
        ),
        (
            "TTA d4 vs one view",
            f"{len(few) / t_d4['d4']:.1f} img/s",
            f"{t_d4['d4'] / t_d4['one']:.2f}x",
            f"target <= 8.5x {_verdict(t_d4['d4'] / t_d4['one'] <= 8.5)} "
            f"({d4.batch_size} inputs per forward)",
        ),
    ]


def bench_tiles(pred, edge: int, repeats, sync) -> list[tuple[str, str, str, str]]:
    """Tiles/s of predict_tiled over an edge×edge image, half of it background."""
    rng = np.random.default_rng(1)
    image = np.full((edge, edge, 3), 240, np.uint8)
    base = np.array([180, 110, 160], np.float32)
    image[:, : edge // 2] = np.clip(base + rng.normal(0, 30, (edge, edge // 2, 3)), 0, 210).astype(
        np.uint8
    )
    tile = min(pred.spec.hw)
    box: dict[str, object] = {}

    def tiled() -> None:
        box["r"] = pred.predict_tiled(image, tile_size=tile, overlap=0.0)

    with torch.inference_mode():
        x = pred.prepare([image[:tile, :tile]] * pred.batch_size).contiguous(
            memory_format=torch.channels_last
        )

    def bare_tiles() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(
                pred.device.type, dtype=pred.amp_dtype, enabled=pred.amp_dtype is not None
            ),
        ):
            pred.model(x).float().cpu()

    t = _interleaved({"tiled": tiled, "bare": bare_tiles}, repeats, sync)
    result = box["r"]
    done = result.n_tiles - result.n_skipped
    bare_rate = pred.batch_size / t["bare"]
    return [
        (
            f"tiled {edge}x{edge}, tile {tile}",
            f"{done / t['tiled']:.1f} tiles/s",
            f"{(done / t['tiled']) / bare_rate:.2f}x of bare",
            f"{result.n_tiles} tiles, {result.n_skipped} skipped, {t['tiled']:.1f} s/image",
        ),
    ]


def bench_cams(pred, repeats, sync) -> list[tuple[str, str, str, str]]:
    """Seconds per image for each CAM method through Predictor.explain."""
    from napari_pathreview.explain.cams import CAM_METHODS

    rng = np.random.default_rng(2)
    hw = pred.spec.hw
    image = np.clip(np.array([180, 110, 160]) + rng.normal(0, 30, (*hw, 3)), 0, 210).astype(
        np.uint8
    )
    rows = []
    for method in CAM_METHODS:
        kw = {"batch_size": 128} if method == "scorecam" else {}
        t = _interleaved(
            {method: lambda m=method, k=kw: pred.explain(image, m, **k)},
            repeats if method != "scorecam" else 1,
            sync,
        )
        rows.append((f"CAM {method}", f"{t[method]:.3f} s/img", "", ""))
    return rows


def bench_scorecam(pred, sync) -> list[tuple[str, str, str, str]]:
    """Batched Score-CAM (exact and top-k) vs pytorch-grad-cam's ScoreCAM defaults."""
    try:
        from pytorch_grad_cam import ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as error:
        return [("ScoreCAM pytorch-grad-cam default", "", "", f"skipped: peer missing ({error})")]

    from napari_pathreview.explain.cams import compute_cam
    from napari_pathreview.explain.metrics import roi_iou

    rng = np.random.default_rng(3)
    hw = pred.spec.hw
    image = np.clip(np.array([180, 110, 160]) + rng.normal(0, 30, (*hw, 3)), 0, 210).astype(
        np.uint8
    )
    with torch.no_grad():
        x = pred.prepare([image])
    model = pred.model
    layers = model.cam_target_layers()
    channels = None
    box: dict[str, np.ndarray] = {}

    def reference() -> None:
        cam = ScoreCAM(model, layers, reshape_transform=model.cam_reshape_transform)
        try:
            box["ref"] = cam(x, [ClassifierOutputTarget(1)])[0]
        finally:
            cam.activations_and_grads.release()

    def ours(top_k=None, key="ours") -> Callable[[], None]:
        def run() -> None:
            box[key] = compute_cam(
                model, x, "scorecam", target_class=1, batch_size=128, top_k=top_k
            )[0]

        return run

    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - silence pytorch-grad-cam's tqdm bars
    try:
        t_ref = _median_time(reference, 1, sync)
        t_ours = _median_time(ours(), 1, sync)
        with torch.inference_mode():
            feats = {}
            hook = layers[0].register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
            model(x)
            hook.remove()
            channels = feats["a"].shape[1]
        k = max(1, channels // 8)
        t_top = _median_time(ours(k, "top"), 1, sync)
    finally:
        sys.stderr.close()
        sys.stderr = sys.__stderr__
    diff = float(np.abs(box["ours"] - box["ref"]).max())
    iou = roi_iou(box["top"], box["ours"] >= 0.5)
    return [
        (
            "ScoreCAM pytorch-grad-cam default",
            f"{t_ref:.2f} s/img",
            "1.00x",
            f"{channels + 1} forwards, batch 16",
        ),
        (
            "ScoreCAM batched, exact",
            f"{t_ours:.2f} s/img",
            f"{t_ref / t_ours:.2f}x faster",
            f"max |diff| vs reference {diff:.1e}; target >= 3x {_verdict(t_ref / t_ours >= 3)}",
        ),
        (
            f"ScoreCAM batched, top-{k} channels",
            f"{t_top:.2f} s/img",
            f"{t_ref / t_top:.2f}x faster",
            f"approx.: IoU@0.5 vs exact {iou:.3f}; target >= 3x {_verdict(t_ref / t_top >= 3)}",
        ),
    ]


def _print(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    print(f"\n## {title}")
    print(f"| {'measurement':<40} | {'rate':>16} | {'ratio':>16} | note")
    print(f"|{'-' * 42}|{'-' * 18}|{'-' * 18}|{'-' * 40}")
    for name, rate, ratio, note in rows:
        print(f"| {name:<40} | {rate:>16} | {ratio:>16} | {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small models and sizes: proves it runs"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1)) if args.device == "cpu" else None
    cuda = args.device != "cpu" and torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    quick = args.quick
    pipe_arch, pipe_size = ("resnet18", 128) if quick else ("resnet50", 224)
    n_images, repeats = (32, 1) if quick else (32, 3)
    edge = 1024 if quick else 4096
    cam_arch, cam_size = ("resnet18", 96) if quick else ("resnet18", 224)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["PATHREVIEW_HOME"] = str(home)
        images = _images(n_images, rng)
        files = sorted(BREAKHIS.glob("*.png"))[:n_images] or images
        print(
            f"# inference benchmark ({'quick' if quick else 'full'}), device {args.device}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        pred = _predictor(
            _register(pipe_arch, pipe_size, home), home, args.device, batch_size=32, qc=False
        )
        print(
            f"pipeline model: {pipe_arch} at {pipe_size}x{pipe_size}, {n_images} images "
            f"({images[0].shape[1]}x{images[0].shape[0]}), medians of {repeats}"
        )
        _print("Pipeline vs bare forward", bench_pipeline(pred, images, files, repeats, sync))
        tile_ref = _register("resnet18", 128 if quick else 224, home)
        tile_pred = _predictor(tile_ref, home, args.device, batch_size=32)
        _print("Tiling", bench_tiles(tile_pred, edge, max(1, repeats - 2), sync))
        cam_pred = _predictor(_register(cam_arch, cam_size, home), home, args.device, batch_size=32)
        _print(
            f"CAM methods ({cam_arch} at {cam_size}x{cam_size})",
            bench_cams(cam_pred, repeats, sync),
        )
        _print("Score-CAM", bench_scorecam(cam_pred, sync))
    return 0


if __name__ == "__main__":
    sys.exit(main())
