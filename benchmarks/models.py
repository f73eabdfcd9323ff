"""Inference throughput of the model zoo, side by side with the bare timm backbone of each family.

For every registered whole-image architecture (or those named with ``--only``, any timm
classifier included), images/s at batch 1 and 32 on CPU in fp32 (NCHW and
channels_last) and with bf16 autocast, next to the bare timm model it is built on, measured in
the same run and interleaved (ours, bare, ours, bare, ...) so a shared CPU slows both alike: the
ratio ours/bare is the figure to read. With CUDA, a GPU section adds fp32 / AMP bf16 / AMP fp16.

    python benchmarks/models.py            # full run (several minutes on 2 cores)
    python benchmarks/models.py --quick    # smoke run: batch 1 and 2, one timed repeat
    python benchmarks/models.py --only resnet18 --batches 1 --repeats 1   # seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import timm
import torch
from torch import nn

from napari_pathreview.errors import ModelNotFoundError
from napari_pathreview.models import create_model

#: registered architectures timed elsewhere: patch MIL reads films, not 224² images
ELSEWHERE = {"patch_mil": "benchmarks/lesion_mil.py"}


def default_names() -> list[str]:
    """Every registered whole-image architecture."""
    from napari_pathreview.models import list_architectures

    return [name for name in list_architectures() if name not in ELSEWHERE]


def reference_names(name: str) -> tuple[str, ...]:
    """The bare timm model(s) of ``name``'s family: the backbones its registration declares.

    A plain timm classifier name (``resnet18``) is its own reference.

    Raises:
        ModelNotFoundError: ``name`` is neither registered nor a timm model.
    """
    from napari_pathreview.models import pretrained_backbones

    return pretrained_backbones(name)


class Bare(nn.Module):
    """The bare timm classifier(s); several run one after the other (the hybrid's two trunks)."""

    def __init__(self, names: tuple[str, ...], num_classes: int) -> None:
        super().__init__()
        self.nets = nn.ModuleList(timm.create_model(n, num_classes=num_classes) for n in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(net(x) for net in self.nets)


@dataclass(frozen=True)
class Row:
    """One architecture × batch × setting: images/s of ours and of the bare reference."""

    device: str
    architecture: str
    reference: str
    batch: int
    setting: str
    ours_ips: float
    bare_ips: float

    @property
    def ratio(self) -> float:
        return self.ours_ips / self.bare_ips


def settings(device: str) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """Precision settings per device: name → autocast context factory (fp32: a null context)."""
    if device == "cpu":
        return {
            "fp32": contextlib.nullcontext,
            "fp32 channels_last": contextlib.nullcontext,
            "bf16 autocast, channels_last": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        }
    return {
        "fp32": contextlib.nullcontext,
        "AMP bf16, channels_last": lambda: torch.autocast("cuda", dtype=torch.bfloat16),
        "AMP fp16, channels_last": lambda: torch.autocast("cuda", dtype=torch.float16),
    }


def time_once(model: nn.Module, x: torch.Tensor, autocast: Callable) -> float:
    """Seconds for one forward pass (synchronised on GPU)."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), autocast():
        model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(
    models: tuple[nn.Module, nn.Module], x: torch.Tensor, autocast: Callable, repeats: int
) -> tuple[float, float]:
    """Median seconds of each model, warmed up once, timed alternately ``repeats`` times.

    The warm-up uses at most 4 images: it primes oneDNN/cuDNN kernels and allocator pools at a
    fraction of a full batch's cost on a shared 2-core CPU.
    """
    for model in models:
        time_once(model, x[:4], autocast)
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for model, sample in zip(models, samples, strict=True):
            sample.append(time_once(model, x, autocast))
    return statistics.median(samples[0]), statistics.median(samples[1])


def prepared(model: nn.Module, device: str, channels_last: bool) -> nn.Module:
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def measure(
    name: str, device: str, batches: tuple[int, ...], repeats: dict[int, int]
) -> Iterator[Row]:
    """Rows for one architecture and its bare reference on ``device``."""
    torch.manual_seed(0)
    ours_base = create_model(name, 2)
    references = reference_names(name)
    bare_base = Bare(references, 2)
    for setting, autocast in settings(device).items():
        channels_last = "channels_last" in setting
        ours = prepared(ours_base, device, channels_last)
        bare = prepared(bare_base, device, channels_last)
        for batch in batches:
            x = torch.randn(batch, 3, 224, 224, device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t_ours, t_bare = interleaved((ours, bare), x, autocast, repeats[batch])
            yield Row(
                device,
                name,
                "+".join(references),
                batch,
                setting,
                batch / t_ours,
                batch / t_bare,
            )


def table(rows: list[Row]) -> str:
    """A markdown table: ours and bare images/s, and the ratio, per setting."""
    lines = [
        "| device | architecture | bare timm reference | batch | setting | ours img/s "
        "| bare img/s | ours/bare |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.device} | {r.architecture} | {r.reference} | {r.batch} | {r.setting} "
            f"| {r.ours_ips:.2f} | {r.bare_ips:.2f} | {r.ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 and 2, one timed repeat")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="architectures to run (registered or any timm classifier; default: all registered)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32], help="CPU batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats at batch <= 8")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.only or default_names()
    for name in names:
        if name in ELSEWHERE:
            parser.error(f"{name} is benchmarked by {ELSEWHERE[name]}")
        try:
            reference_names(name)
        except ModelNotFoundError as error:
            parser.error(str(error))
    batches = (1, 2) if args.quick else tuple(args.batches)
    repeats = {b: 1 if args.quick or b > 8 else args.repeats for b in batches}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} threads")
    rows: list[Row] = []
    for device in devices:
        device_batches = batches if device == "cpu" or args.quick else (1, 32, 256)
        device_repeats = repeats if device == "cpu" else dict.fromkeys(device_batches, 10)
        for name in names:
            for row in measure(name, device, device_batches, device_repeats):
                rows.append(row)
                print(
                    f"  {row.device} {row.architecture} b{row.batch} {row.setting}: "
                    f"{row.ours_ips:.2f} vs {row.bare_ips:.2f} img/s",
                    flush=True,
                )
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(r) | {"ratio": r.ratio} for r in rows], handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
