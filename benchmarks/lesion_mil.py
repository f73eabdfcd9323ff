"""Lesion-aware (patch MIL) mammogram prediction: what stride and a fold ensemble cost.

A ``patch_mil`` model encodes every patch of a film's grid, so its cost is set by the grid
(stride 32 → 15×15 patches on a 512² film at 0.4 mm/px, stride 16 → 29×29) times the number of
members (``register.select: ensemble`` registers all k fold models). For each geometry the
script times ``Predictor.predict`` on MIAS films end to end (decode, intensity rule, resample,
unfold, encode, pool) beside the reference measured in the same run, interleaved: the bare
timm encoder's forward over the same number of 64-px patches, pre-cut, in the same precision
and memory format as the Predictor.

    python benchmarks/lesion_mil.py            # 4 films, 5 interleaved repeats
    python benchmarks/lesion_mil.py --quick    # 1 film, 1 repeat, stride 32 only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MIAS = ROOT.parent / "shared" / "data" / "mias_full"
PATCH, SIDE, ENCODER = 64, 512, "resnet18"


def _films(n: int, folder: Path) -> list[str]:
    """MIAS films when the shared data is there, else synthetic 1024² grey films named as MIAS."""
    files = sorted(MIAS.glob("mdb*.png"))[:n]
    if files:
        return [str(f) for f in files]
    import cv2

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        film = np.zeros((1024, 1024), np.uint8)
        cv2.circle(film, (0, 512), 700, 1, -1)
        film = np.where(film, rng.normal(140, 25, film.shape), 0).clip(0, 255).astype(np.uint8)
        path = folder / f"mdb{i + 1:03d}.png"
        cv2.imwrite(str(path), film)
        out.append(str(path))
    return out


def _register(home: Path, stride: int, members: int) -> str:
    from napari_pathreview.models import create_model
    from napari_pathreview.registry import ModelRegistry

    torch.manual_seed(0)
    model = create_model(
        "patch_mil",
        3,
        encoder=ENCODER,
        patch_size=PATCH,
        stride=stride,
        pooling="topk",
        topk=0.02,
        input_size=SIDE,
        negative_class=0,
        modality_hint="mammogram",
        members=members,
    ).eval()
    name = f"bench-mil-s{stride}-x{members}"
    card = {
        "name": name,
        "task": "mammogram",
        "classes": ["normal", "benign", "malignant"],
        "modality": "mammogram",
        "description": "benchmark model with random weights",
        "preprocess": {
            "input_size": [3, SIDE, SIDE],
            "crop": "none",
            "channels": "grey_to_rgb",
            "intensity": "breast",
            "pixel_size": 0.4,
            "pixel_unit": "mm",
        },
    }
    return f"{name}@{ModelRegistry(home / 'models').register(model, card)}"


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turns so a shared CPU slows all alike."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def bench(stride: int, members: int, films: list[str], home: Path, repeats: int) -> dict:
    import timm

    from napari_pathreview.inference import Predictor
    from napari_pathreview.models.mil import grid_shape
    from napari_pathreview.registry import ModelRegistry

    ref = _register(home, stride, members)
    predictor = Predictor.from_registry(
        ref, registry=ModelRegistry(home / "models"), device="cpu", qc=False
    )
    patches_per_film = int(np.prod(grid_shape(SIDE, SIDE, PATCH, stride))) * members
    # the reference runs as the Predictor does: channels_last, and its autocast dtype if any
    bare = timm.create_model(ENCODER, num_classes=0).eval().to(memory_format=torch.channels_last)
    batch = torch.randn(min(patches_per_film, 256), 3, PATCH, PATCH)
    batch = batch.contiguous(memory_format=torch.channels_last)
    amp = predictor.amp_dtype

    def reference() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            for _ in films:
                for start in range(0, patches_per_film, len(batch)):
                    bare(batch[: min(len(batch), patches_per_film - start)])

    seconds = _interleaved({"ours": lambda: predictor.predict(films), "bare": reference}, repeats)
    return {
        "stride": stride,
        "members": members,
        "patches": patches_per_film,
        "ours_s": seconds["ours"] / len(films),
        "bare_s": seconds["bare"] / len(films),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 film, 1 repeat, stride 32 only")
    args = parser.parse_args(argv)
    geometries = [(32, 1), (32, 5)] if args.quick else [(32, 1), (32, 5), (16, 1), (16, 5)]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        films = _films(1 if args.quick else 4, home)
        source = "MIAS films" if str(MIAS) in films[0] else "synthetic films"
        rows = [bench(s, m, films, home, 1 if args.quick else 5) for s, m in geometries]
    print(f"# patch_mil ({ENCODER}, {PATCH}-px patches, {SIDE}² input) on {source}, CPU")
    print("| stride | members | patches/film | s/film (ours) | s/film (bare encoder) | ours/bare |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stride']} | {r['members']} | {r['patches']} | {r['ours_s']:.3f} | "
            f"{r['bare_s']:.3f} | {r['ours_s'] / r['bare_s']:.2f}x |"
        )
    single = {r["stride"]: r["ours_s"] for r in rows if r["members"] == 1}
    for r in rows:
        if r["members"] > 1:
            print(
                f"stride {r['stride']}: the {r['members']}-fold ensemble costs "
                f"{r['ours_s'] / single[r['stride']]:.2f}x one fold model"
            )


if __name__ == "__main__":
    main()
