"""What the benchmark scripts share: size options that ``--quick`` shrinks, the options of the
random-weights model a slide benchmark times, that model's registration, and the reference a
CAM benchmark compares with (the bare forward over the same tiles).

Not a benchmark itself. The scripts import it as a sibling module: ``python benchmarks/x.py``
puts benchmarks/ first on ``sys.path`` (``tests/test_benchmarks.py`` adds it too).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence


def add_size(
    parser: argparse.ArgumentParser,
    key: str,
    text: str,
    sizes: Mapping[str, int],
    quick: Mapping[str, int],
) -> None:
    """``--key`` (``_`` written ``-``), an int left None for :func:`parse_sized` to fill; its help
    names the full and the ``--quick`` default."""
    parser.add_argument(
        f"--{key.replace('_', '-')}",
        type=int,
        default=None,
        help=f"{text} (default {sizes[key]}; {quick[key]} with --quick)",
    )


def parse_sized(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    sizes: Mapping[str, int],
    quick: Mapping[str, int],
) -> argparse.Namespace:
    """Parse ``argv``; each size not given takes its ``--quick`` value with ``--quick``, else its
    full one: a size given explicitly wins over both (``--quick --edge 2048``)."""
    args = parser.parse_args(argv)
    for key, value in (quick if args.quick else sizes).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def add_slide_options(
    parser: argparse.ArgumentParser, sizes: Mapping[str, int], quick: Mapping[str, int]
) -> None:
    """What a slide benchmark takes: the sizes ``--edge``, ``--input``, ``--batch`` and
    ``--repeats`` (:func:`add_size`), and ``--arch``, ``--um``, ``--device`` of the model."""
    for key, text in (
        ("edge", "slide edge at 0.25 µm/px"),
        ("input", "model input side (px)"),
        ("batch", "tiles per forward"),
        ("repeats", "interleaved repeats (best of)"),
    ):
        add_size(parser, key, text, sizes, quick)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--um", type=float, default=0.5, help="model µm/px")
    parser.add_argument("--device", default="auto")


def register_random_model(registry, name: str, arch: str, side: int, **card) -> str:
    """Register ``arch`` with random weights (torch seed 0) as a binary histology model taking
    ``side``² inputs, ``card`` adding or overriding card keys; returns ``NAME@VERSION``."""
    import torch

    from napari_pathreview.models import create_model

    torch.manual_seed(0)
    card = {
        "name": name,
        "architecture": arch,
        "task": "binary",
        "classes": ["benign", "malignant"],
        "modality": "histology",
        "input_size": [3, side, side],
        "threshold": 0.5,
        **card,
    }
    version = registry.register(create_model(arch, 2).eval(), card)
    return f"{name}@{version}"


def sync(predictor) -> None:
    """Wait for the predictor's GPU work, so a timer stops when the work has (no-op on CPU)."""
    import torch

    if predictor.device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward_seconds(predictor, tiles: Sequence, spec=None) -> float:
    """Seconds for one plain forward (fp32, as Grad-CAM runs it) over ``tiles``, prepared and
    batched up front (``predictor.prepare`` with ``spec``, the predictor's own when None) and
    after one warm-up batch: the floor one forward per tile costs."""
    import torch

    size = predictor.batch_size
    with torch.inference_mode():
        batches = [predictor.prepare(tiles[i : i + size], spec) for i in range(0, len(tiles), size)]
        predictor.model(batches[0])  # warm-up
        sync(predictor)
        start = time.perf_counter()
        for x in batches:
            predictor.model(x).float().cpu()
        sync(predictor)
    return time.perf_counter() - start
