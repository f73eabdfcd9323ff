"""Labels → GeoJSON outlines: our pixel-edge tracer against OpenCV's findContours.

Reference (measured in the same run, on the same label image): for each label value,
``cv2.findContours`` (RETR_CCOMP, CHAIN_APPROX_SIMPLE: outlines and holes, turning corners
only) on that label's mask cropped to its bounding box — the fastest way a plugin could outline
a Labels layer, though through pixel centres, so not what QuPath should measure. Ours:
``label_image_to_rois`` (pixel edges, holes assigned, napari coordinates), the work of saving a
Labels layer less the JSON writing. Workloads: a slide-sized image with thousands of painted
regions, one large region with a ragged edge and holes, and random noise (the worst case: a
corner every pixel). Repeats are interleaved; best times are printed with ours / reference.

    python benchmarks/label_outlines.py --quick
    python benchmarks/label_outlines.py --edge 20000 --regions 3000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from _bench import add_size, parse_sized
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_pathreview.io.labels import label_image_to_rois  # noqa: E402


def painted_regions(edge: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` brush-painted blobs (label 1..count, some overlapping) on an edge² image:
    wobbly outlines with a pixel-scale jitter."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((edge, edge), dtype=np.int32)
    radius = max(4, int(edge / (4 * np.sqrt(count))))
    for value in range(1, count + 1):
        r = int(rng.integers(radius // 2, radius * 2))
        row, col = (int(x) for x in rng.integers(0, edge - 2 * r - 1, 2))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        angle = np.arctan2(yy, xx)
        wobble = sum(
            rng.uniform(0, 0.08) * np.sin(k * angle + rng.uniform(0, 6)) for k in (2, 3, 5)
        )
        jitter = rng.normal(0, 0.7, yy.shape)
        blob = np.hypot(yy, xx) + jitter < 0.8 * r * (1 + wobble)
        labels[row : row + 2 * r + 1, col : col + 2 * r + 1][blob] = value
    return labels


def ragged_region(edge: int, seed: int = 0) -> np.ndarray:
    """One region filling most of the image: a wavy disc whose edge is ragged at the scale of a
    few pixels, with a scatter of holes (built in strips of rows, so a 20000² image needs
    little more than its own bytes)."""
    rng = np.random.default_rng(seed)
    radius, cells = 0.45 * edge, edge // 8 + 2  # fields sampled every 8 px, then interpolated
    grain = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    small = np.meshgrid(*[np.arange(cells, dtype=np.float32) * 16 / cells] * 2, indexing="ij")
    wave = ndimage.map_coordinates(rng.normal(0, 1, (18, 18)), small, order=3)
    shift = (0.05 * radius * wave + 3 * grain).astype(np.float32)
    cols = np.arange(edge, dtype=np.float32)
    region = np.empty((edge, edge), dtype=np.uint8)
    for top in range(0, edge, 1024):
        rows = np.arange(top, min(top + 1024, edge), dtype=np.float32)
        grid = [g / 8 for g in np.meshgrid(rows, cols, indexing="ij")]
        distance = np.hypot(rows[:, None] - edge / 2, cols[None, :] - edge / 2)
        outline = distance + ndimage.map_coordinates(shift, grid, order=1) < radius
        region[top : top + rows.size] = outline & (
            ndimage.map_coordinates(grain, grid, order=1) < 3.2
        )
    return region


def noise(edge: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((edge, edge)) < 0.5).astype(np.uint8)


def reference(labels: np.ndarray) -> int:
    """OpenCV contours of every label in its bounding box; returns the contour count."""
    total = 0
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is not None:
            mask = (labels[box] == index + 1).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            total += len(contours)
    return total


def ours(labels: np.ndarray) -> int:
    return sum(1 + len(roi.holes) for roi in label_image_to_rois(labels))


def best_times(labels: np.ndarray, repeats: int) -> tuple[float, float, int, int]:
    """Best seconds of ours and of the reference, repeats interleaved, and their ring counts."""
    runs: dict[Callable[[np.ndarray], int], list[float]] = {ours: [], reference: []}
    counts: dict[Callable[[np.ndarray], int], int] = {}
    for _ in range(repeats):
        for function, times in runs.items():
            start = time.perf_counter()
            counts[function] = function(labels)
            times.append(time.perf_counter() - start)
    return min(runs[ours]), min(runs[reference]), counts[ours], counts[reference]


#: The sizes a run takes unless given: full, and with --quick (explicit flags win over both).
SIZES = {"edge": 8192, "regions": 2000, "noise_edge": 1024, "repeats": 3}
QUICK_SIZES = {"edge": 1024, "regions": 100, "noise_edge": 256, "repeats": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024² images, one repeat")
    for key, text in (
        ("edge", "image edge in pixels"),
        ("regions", "painted regions"),
        ("noise_edge", "edge of the noise image"),
        ("repeats", "timed repeats (best of)"),
    ):
        add_size(parser, key, text, SIZES, QUICK_SIZES)
    return parse_sized(parser, argv, SIZES, QUICK_SIZES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = {
        f"{args.regions} regions, {args.edge}²": painted_regions(args.edge, args.regions),
        f"1 ragged region with holes, {args.edge}²": ragged_region(args.edge),
        f"random noise, {args.noise_edge}²": noise(args.noise_edge),
    }
    print(f"{'workload':<36} {'rings':>8} {'ours s':>9} {'cv2 s':>9} {'ours / cv2':>11}")
    for name, labels in workloads.items():
        mine, peer, rings, contours = best_times(labels, args.repeats)
        print(f"{name:<36} {rings:>8} {mine:>9.3f} {peer:>9.3f} {mine / peer:>10.2f}x")
        print(f"{'':<36} {'(cv2: ' + str(contours) + ' contours)':>30}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
