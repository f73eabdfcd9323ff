"""Device and precision choices for inference: auto/cpu/cuda/mps, AMP dtype, OOM detection."""

from __future__ import annotations

import logging

import torch

from napari_pathreview.errors import InvalidInputError

__all__ = ["DEVICES", "DeviceUnavailableError", "amp_dtype", "is_out_of_memory", "resolve_device"]

logger = logging.getLogger(__name__)

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


class DeviceUnavailableError(InvalidInputError):
    """The requested accelerator is not present (or this torch build cannot use it)."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's choice; "auto" prefers CUDA, then MPS, then CPU.

    Raises:
        DeviceUnavailableError: "cuda" or "mps" was asked for and is not available, so the
            user learns it instead of silently waiting on the CPU.
    """
    if isinstance(name, torch.device):
        name = str(name)
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
            "device 'cuda' was requested but CUDA is not available (no NVIDIA GPU, or a CPU-only "
            "torch build); use --device cpu or --device auto"
        )
    if kind == "mps" and not _mps_available():
        raise DeviceUnavailableError("device 'mps' was requested but Apple MPS is not available")
    return torch.device(key)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for inference: bf16 on CUDA where supported, else fp16; None elsewhere.

    CPU autocast is left off: on CPUs without AMX or AVX512-BF16 it is slower than fp32, and
    predictions should not depend on which CPU ran them.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an accelerator out-of-memory error (worth halving the batch)."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", None
    )
    if oom_type is not None and isinstance(error, oom_type):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
