"""The one place a user's device choice becomes a torch device; AMP dtype and OOM detection.

Widgets, the CLIs, the registry and training all resolve devices here, so "auto" means the
same everywhere (CUDA, then Apple MPS, then CPU) and an absent accelerator is always the same
:class:`~napari_pathreview.errors.DeviceUnavailableError`. Torch is imported on first call, so
``DEVICES`` can feed argparse and widget choices without loading torch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from napari_pathreview.errors import DeviceUnavailableError, InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICES",
    "DeviceUnavailableError",
    "amp_dtype",
    "is_out_of_memory",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: The device choices every entry point offers ("cuda:1" etc. are accepted too).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a user's choice; "auto" prefers CUDA, then MPS, then CPU.

    Args:
        name: One of :data:`DEVICES`, optionally with an index ("cuda:1"), or a torch.device.

    Raises:
        InvalidInputError: an unknown device name.
        DeviceUnavailableError: "cuda" or "mps" was asked for and is not available, so the
            user learns it instead of silently waiting on the CPU.
    """
    import torch

    key = str(name or "auto").lower()
    kind = key.split(":", 1)[0]
    if kind not in DEVICES:
        raise InvalidInputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "device 'cuda' was requested but CUDA is not available on this machine (no NVIDIA "
            "GPU, or a CPU-only torch build); choose device 'auto' or 'cpu'"
        )
    if kind == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            "device 'mps' was requested but Apple MPS is not available on this machine; "
            "choose device 'auto' or 'cpu'"
        )
    return torch.device(key)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for inference: bf16 on CUDA where supported, else fp16; None elsewhere.

    CPU autocast is left off: on CPUs without AMX or AVX512-BF16 it is slower than fp32, and
    predictions should not depend on which CPU ran them.
    """
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an accelerator out-of-memory error (worth halving the batch)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", None
    )
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
