"""Stain-normalisation benchmark: ours against torchstain, TIAToolbox, StainTools and OpenCV-LAB.

Workloads (real images from ../shared/data, tiled up to size): one 2048×1536 image, one
4096×4096 image, and 64 tiles of 224×224. Every implementation is fitted to the same target
(torchstain's README target), then timed with repeats interleaved across implementations so a
shared CPU slows all alike; medians are printed with the ratio ours / peer (below 1 = we are
faster) and the speed-up peer / ours. Peers have no batch API, so they process the tiles one by
one; ours runs the tiles as one N×3×H×W torch batch (and, for information, tile by tile in numpy).
A probe then feeds white, near-white noise, flat pink and black tiles to every implementation
and records whether it raised, returned NaN/inf, or returned finite output.

Usage (peers live in a separate venv because TIAToolbox and StainTools pin their own stacks):
    .bench/venv/bin/python benchmarks/stain.py [--quick] [--reps N]
with ``PYTHONPATH=src`` when the package is not installed in that venv. Missing peers are skipped
and named in the output.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("PATHREVIEW_SHARED_DATA", ROOT.parent / "shared" / "data"))

from napari_pathreview.stain import get_normalizer  # noqa: E402

Transform = Callable[[np.ndarray], object]


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mosaic(height: int, width: int) -> np.ndarray:
    """A real-content image of the requested size: BreaKHis and H&E reference images tiled."""
    sources = [read_rgb(p) for p in sorted((DATA / "breakhis").glob("*.png"))[::3]]
    sources += [
        cv2.resize(read_rgb(p), (700, 700))
        for p in sorted((DATA / "he_reference").glob("HEnorm*.png"))
    ]
    canvas = np.empty((height, width, 3), np.uint8)
    k, y = 0, 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            src = sources[k % len(sources)]
            k += 1
            h, w = min(src.shape[0], height - y), min(src.shape[1], width - x)
            canvas[y : y + h, x : x + w] = src[:h, :w]
            x, row_h = x + w, max(row_h, h)
        y += row_h
    return canvas


def make_tiles(count: int) -> np.ndarray:
    images = [read_rgb(p) for p in sorted((DATA / "breakhis").glob("*.png"))]
    tiles = []
    for i in range(count):
        img = images[i % len(images)]
        y, x = (i * 37) % (img.shape[0] - 224), (i * 91) % (img.shape[1] - 224)
        tiles.append(img[y : y + 224, x : x + 224])
    return np.stack(tiles)


class OpenCVReinhard:
    """The plain OpenCV-LAB Reinhard everyone writes: float LAB, per-channel affine, back."""

    def fit(self, target: np.ndarray) -> None:
        lab = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
        self.mean, self.std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)

    def transform(self, image: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
        out = (lab - mean) / std * self.std + self.mean
        return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def build_peers(target: np.ndarray) -> tuple[dict[tuple[str, str], Transform], list[str]]:
    """(method, implementation) → transform of one uint8 image; plus the peers that were skipped."""
    peers: dict[tuple[str, str], Transform] = {}
    skipped: list[str] = []
    ref = OpenCVReinhard()
    ref.fit(target)
    peers[("reinhard", "opencv-lab ref")] = ref.transform
    try:
        import torchstain

        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()  # noqa: E731
        for backend in ("numpy", "torch"):
            conv = (lambda a: a) if backend == "numpy" else to_t
            mac = torchstain.normalizers.MacenkoNormalizer(backend=backend)
            mac.fit(conv(target))
            peers[("macenko", f"torchstain-{backend}")] = lambda a, m=mac, c=conv: m.normalize(
                I=c(a), stains=False
            )
            rein = torchstain.normalizers.ReinhardNormalizer(backend=backend)
            rein.fit(conv(target))
            peers[("reinhard", f"torchstain-{backend}")] = lambda a, r=rein, c=conv: r.normalize(
                c(a)
            )
    except ImportError as error:
        skipped.append(f"torchstain ({error})")
    try:
        from tiatoolbox.tools.stainnorm import get_normalizer as tia_get

        for method in ("reinhard", "macenko", "vahadane"):
            norm = tia_get(method)
            norm.fit(target)
            peers[(method, "tiatoolbox")] = norm.transform
    except ImportError as error:
        skipped.append(f"tiatoolbox ({error})")
    try:
        import staintools

        rein = staintools.ReinhardColorNormalizer()
        rein.fit(target)
        peers[("reinhard", "staintools")] = rein.transform
        for method in ("macenko", "vahadane"):
            norm = staintools.StainNormalizer(method=method)
            norm.fit(target)
            peers[(method, "staintools")] = norm.transform
    except ImportError as error:
        skipped.append(f"staintools ({error})")
    return peers, skipped


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def run_workload(
    calls: dict[str, Callable[[], object]], reps: int, slow_ms: float
) -> tuple[dict[str, float], dict[str, str]]:
    """Median ms per call (NaN for a call that raised), repeats interleaved; calls slower than
    ``slow_ms`` get fewer repeats. Also returns what each failed call raised (``failure_note``)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    failed: dict[str, str] = {}
    for rep in range(reps):
        for name, fn in calls.items():
            if name in failed or (rep >= 2 and times[name] and min(times[name]) > slow_ms):
                continue
            try:
                times[name].append(timed(fn))
            except Exception as error:  # a peer failing on real tissue is a result, not a crash
                failed[name] = failure_note(error)
    out = {n: statistics.median(t) for n, t in times.items() if t}
    out.update({n: float("nan") for n in failed})
    return out, failed


def failure_note(error: BaseException, limit: int = 160) -> str:
    """'LinAlgError: SVD did not converge': the exception's type and first line, shortened."""
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def time_workloads(
    workloads: dict[str, np.ndarray],
    peers: dict[tuple[str, str], Transform],
    target: np.ndarray,
    reps: int,
    methods: tuple[str, ...] = ("reinhard", "macenko", "vahadane"),
) -> tuple[dict[tuple[str, str], dict[str, float]], list[tuple[str, str, str, str]]]:
    """Ours and every peer on every workload: the table of medians and the failures
    (method, implementation, workload, note) behind its NaN cells."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    failures: list[tuple[str, str, str, str]] = []
    for method in methods:
        for label, data in workloads.items():
            is_tiles = data.ndim == 4
            calls = ours_calls(
                method, target, None if is_tiles else data, data if is_tiles else None
            )
            for (m, name), fn in peers.items():
                if m != method:
                    continue
                if is_tiles:
                    calls[name] = lambda fn=fn, data=data: [fn(t) for t in data]
                else:
                    calls[name] = lambda fn=fn, data=data: fn(data)
            medians, failed = run_workload(calls, reps, slow_ms=4000)
            for name, ms in medians.items():
                table.setdefault((method, name), {})[label] = ms
            failures += [(method, name, label, note) for name, note in failed.items()]
    return table, failures


def probe(
    target: np.ndarray, peers: dict[tuple[str, str], Transform]
) -> list[tuple[str, str, list[str]]]:
    """White, near-white noise, flat pink and black tiles through every implementation."""
    rng = np.random.default_rng(0)
    cases = {
        "white": np.full((224, 224, 3), 255, np.uint8),
        "near-white": rng.integers(236, 256, (224, 224, 3), dtype=np.uint8),
        "flat pink": np.broadcast_to(np.array([230, 150, 200], np.uint8), (224, 224, 3)).copy(),
        "black": np.zeros((224, 224, 3), np.uint8),
    }
    rows = []
    impls = dict(peers)
    for method in ("reinhard", "macenko", "vahadane"):
        ours = get_normalizer(method).fit(target)
        impls[(method, "ours-numpy")] = ours.transform
        impls[(method, "ours-torch")] = lambda a, n=ours: n.transform(
            torch.from_numpy(a).permute(2, 0, 1)[None]
        )
    for (method, name), fn in sorted(impls.items()):
        results = []
        for case, tile in cases.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = fn(tile.copy())
                out = out[0] if isinstance(out, tuple) else out
                arr = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
                finite = np.isfinite(arr.astype(np.float64)).all()
                tag = "finite" if finite else "NaN/inf"
                if finite and arr.size and arr.max() == 0 and case != "black":
                    tag = "all-black"
                elif finite and _same(arr, tile):
                    tag = "unchanged"
                results.append(f"{case}: {tag}")
            except Exception as error:  # recording which peer raises is the point of the probe
                results.append(f"{case}: raised {type(error).__name__}")
        rows.append((method, name, results))
    return rows


def _same(arr: np.ndarray, tile: np.ndarray) -> bool:
    """Whether an output (H×W×3, or 1×3×H×W from a torch batch) equals the input tile."""
    if arr.shape[:1] == (1,) and arr.ndim == 4:
        arr = arr[0].transpose(1, 2, 0)
    return arr.shape == tile.shape and np.array_equal(arr, tile)


def ours_calls(
    method: str, target: np.ndarray, image: np.ndarray | None, tiles: np.ndarray | None
) -> dict:
    norm = get_normalizer(method).fit(target)
    calls: dict[str, Callable[[], object]] = {}
    if image is not None:
        calls["ours-numpy"] = lambda: norm.transform(image)
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
        calls["ours-torch-cpu"] = lambda: norm.transform(tensor)
        if torch.cuda.is_available():
            gpu = tensor.cuda()
            calls["ours-torch-cuda"] = lambda: (norm.transform(gpu), torch.cuda.synchronize())
    else:
        batch = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
        calls["ours-torch-batch"] = lambda: norm.transform(batch)
        calls["ours-numpy-loop"] = lambda: [norm.transform(t) for t in tiles]
        if torch.cuda.is_available():
            gpu = batch.cuda()
            calls["ours-torch-cuda"] = lambda: (norm.transform(gpu), torch.cuda.synchronize())
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2048×1536 and 16 tiles, 1 repeat")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    reps = 1 if args.quick else args.reps
    target = read_rgb(DATA / "he_reference" / "torchstain_target.png")
    peers, skipped = build_peers(target)
    workloads = {"2048x1536": mosaic(1536, 2048)}
    if not args.quick:
        workloads["4096x4096"] = mosaic(4096, 4096)
    n_tiles = 16 if args.quick else 64
    tiles = make_tiles(n_tiles)
    workloads[f"{n_tiles} tiles 224"] = tiles
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cuda {torch.cuda.is_available()}"
    )
    print("skipped peers: " + (", ".join(skipped) or "none"))
    table, failures = time_workloads(workloads, peers, target, reps)
    print_table(table, list(workloads))
    print_failures(failures)
    print_ratios(table, list(workloads))
    print("\nprobe (blank / flat 224² tiles):")
    logging.getLogger("napari_pathreview").setLevel(
        logging.ERROR
    )  # pass-throughs are expected here
    for method, name, results in probe(target, peers):
        print(f"  {method:9s} {name:18s} " + "; ".join(results))
    return 0


def print_table(table: dict, labels: list[str]) -> None:
    print("\nmedian ms per call (tiles: all tiles, peers one by one)")
    print(f"{'method':9s} {'implementation':18s} " + " ".join(f"{lab:>16s}" for lab in labels))
    for (method, name), row in table.items():
        cells = " ".join(f"{row.get(lab, float('nan')):16.1f}" for lab in labels)
        print(f"{method:9s} {name:18s} {cells}")


def print_failures(failures: list[tuple[str, str, str, str]]) -> None:
    """Why a cell above reads nan (and its ratio n/a): what the implementation raised."""
    if not failures:
        return
    print("failed while timed (nan above, n/a below):")
    for method, name, label, note in failures:
        print(f"  {method:9s} {name:18s} {label}: {note}")


def print_ratios(table: dict, labels: list[str]) -> None:
    print("\nratios ours / peer (< 1: ours faster; in brackets the speed-up peer / ours)")
    print("ours = numpy path for one image; for tiles the faster of torch batch and numpy loop")
    for (method, name), row in table.items():
        if name.startswith("ours"):
            continue
        cells = []
        for lab in labels:
            names = ("ours-torch-batch", "ours-numpy-loop") if "tiles" in lab else ("ours-numpy",)
            ours = min(table.get((method, n), {}).get(lab, float("inf")) for n in names)
            theirs = row.get(lab, float("nan"))
            cells.append(
                f"{ours / theirs:6.3f} ({theirs / ours:5.1f}x)" if theirs == theirs else "   n/a"
            )
        print(
            f"{method:9s} vs {name:18s} "
            + "  ".join(f"{lab}: {c}" for lab, c in zip(labels, cells, strict=True))
        )
    if torch.cuda.is_available():
        for method in ("reinhard", "macenko", "vahadane"):
            for lab in labels:
                cpu_name = "ours-torch-batch" if "tiles" in lab else "ours-torch-cpu"
                cpu = table.get((method, cpu_name), {}).get(lab)
                gpu = table.get((method, "ours-torch-cuda"), {}).get(lab)
                if cpu and gpu:
                    print(
                        f"{method:9s} GPU speed-up over our CPU torch path, {lab}: "
                        f"{cpu / gpu:6.1f}x"
                    )


if __name__ == "__main__":
    sys.exit(main())
