"""Encode every patch once, keep the embeddings in zarr, and train MIL heads on them in seconds.

The encoder is the expensive part of a patch model; the MIL head on top is a few linear layers.
Caching the (N_patches × D) embedding of every image lets the head (and its pooling variants)
train on a CPU in seconds, and lets any encoder a user has be used without fine-tuning it: a
model from the registry, or any timm architecture with local safetensors weights (e.g. a
pathology foundation model on disk). Layout of the store::

    store.zarr/            attrs: encoder, patch_size, stride, dim, pixel_size
      emb/<i>              (gh·gw, D) float16, attrs grid = [gh, gw], key = image path
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathreview.errors import InvalidInputError

log = logging.getLogger(__name__)


class EmbeddingError(InvalidInputError):
    """An encoder cannot be loaded or a cache does not match what is asked of it."""


@dataclass(frozen=True)
class PatchEncoder:
    """A frozen patch → embedding function with the normalisation its weights expect."""

    name: str
    model: object  # torch.nn.Module
    dim: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of_patch_model(cls, name: str, model) -> PatchEncoder:
        """A patch MIL model's own encoder: its embedding, width and normalisation."""
        return cls(name, model, model.head.dim, tuple(model.spec.mean), tuple(model.spec.std))

    def __call__(self, patches):
        """(M, D) embeddings of normalised (M, C, p, p) patches."""
        from napari_pathreview.models.mil import PatchMIL

        if isinstance(self.model, PatchMIL):
            return self.model.embed(patches)
        return self.model.forward_head(self.model.forward_features(patches), pre_logits=True)


def load_encoder(spec: str, device: str = "cpu") -> PatchEncoder:
    """An encoder from ``registry:NAME[@VERSION]`` or ``timm:ARCH[=path/to/weights.safetensors]``.

    ``timm:ARCH`` without a file takes that architecture's pretrained weights where the models
    find them ($PATHREVIEW_PRETRAINED_DIR, else timm's hub): a frozen encoder is only worth its
    weights, so it is never left randomly initialised.

    Raises:
        EmbeddingError: the spec is malformed; registry and weight errors pass through.
    """
    import torch

    kind, _, rest = spec.partition(":")
    if kind == "registry" and rest:
        from napari_pathreview.registry import ModelRegistry

        name, _, version = rest.partition("@")
        model = ModelRegistry().load(name, version or None, device=device)
    elif kind == "timm" and rest:
        from napari_pathreview.models import create_model

        arch, _, weights = rest.partition("=")
        model = create_model(arch, 1, pretrained=True, pretrained_path=weights or None)
    else:
        raise EmbeddingError(
            f"encoder {spec!r}: use registry:NAME[@VERSION] or timm:ARCH[=weights.safetensors]"
        )
    model.eval().to(device)
    with torch.no_grad():
        size = getattr(model, "patch_size", 64)
        dim = int(PatchEncoder(spec, model, 0, (), ())(torch.zeros(1, 3, size, size)).shape[-1])
    return PatchEncoder(spec, model, dim, tuple(model.spec.mean), tuple(model.spec.std))


def model_input(pixels: np.ndarray, mean, std, device="cpu"):
    """N×C×H×W float input, normalised as the weights expect, of H×W×3 or N×H×W×3 uint8."""
    import torch

    writable = np.require(pixels, requirements=["C", "W"])  # torch warns on read-only arrays
    x = torch.from_numpy(writable).to(device)
    x = (x[None] if x.ndim == 3 else x).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return (x - m) / s


def encode_image(
    encoder: PatchEncoder,
    pixels: np.ndarray,
    patch: int,
    stride: int,
    batch: int = 256,
    device: str = "cpu",
) -> tuple[np.ndarray, tuple[int, int]]:
    """(gh·gw, D) embeddings of the patch grid of one H×W×3 uint8 image, and (gh, gw)."""
    import torch

    from napari_pathreview.models.mil import unfold_patches

    tiles, grid = unfold_patches(
        model_input(pixels, encoder.mean, encoder.std, device), patch, stride
    )
    out = []
    with torch.no_grad():
        for start in range(0, tiles.shape[0], batch):
            out.append(encoder(tiles[start : start + batch]).float().cpu().numpy())
    return np.concatenate(out), grid


@dataclass(frozen=True)
class EmbeddingCache:
    """Embeddings of a list of images, read back from (or just written to) a zarr store."""

    path: Path
    keys: tuple[str, ...]
    bags: tuple[np.ndarray, ...]  # per image (N, D) float32
    grids: tuple[tuple[int, int], ...]
    attrs: dict


def encode_to_zarr(
    encoder: PatchEncoder,
    images: Sequence[np.ndarray],
    keys: Sequence[str],
    path: str | Path,
    patch: int,
    stride: int,
    pixel_size: float | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddingCache:
    """Encode the patch grid of every image once and store it; reuses a matching store.

    A store is reused only when encoder, patch geometry and keys match, so a stale cache is
    never read for another encoder.
    """
    import zarr

    path = Path(path)
    attrs = {
        "encoder": encoder.name,
        "patch_size": int(patch),
        "stride": int(stride),
        "dim": int(encoder.dim),
        "pixel_size": pixel_size,
        "keys": list(keys),
    }
    if path.exists():
        cached = read_cache(path)
        if {k: cached.attrs.get(k) for k in attrs} == attrs:
            log.info("reusing embeddings in %s", path)
            return cached
    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(attrs)
    bags, grids = [], []
    for i, pixels in enumerate(images):
        emb, grid = encode_image(encoder, pixels, patch, stride, device=device)
        array = _write_array(group, f"emb/{i}", emb.astype(np.float16))
        array.attrs["grid"] = list(grid)
        bags.append(emb.astype(np.float32))
        grids.append(grid)
        if progress:
            progress(i + 1, len(images))
    return EmbeddingCache(path, tuple(keys), tuple(bags), tuple(grids), attrs)


def _write_array(group, name: str, data: np.ndarray):
    """``create_array`` (zarr 3) or ``array`` (zarr 2): the project allows both."""
    create = getattr(group, "create_array", None)
    return create(name, data=data) if create is not None else group.array(name, data)


def read_cache(path: str | Path) -> EmbeddingCache:
    """Read a store written by ``encode_to_zarr``."""
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        keys = tuple(attrs["keys"])
        arrays = [group[f"emb/{i}"] for i in range(len(keys))]
    except (KeyError, FileNotFoundError, ValueError) as error:
        raise EmbeddingError(f"{path} is not an embedding store ({error})") from None
    bags = tuple(np.asarray(a[:], dtype=np.float32) for a in arrays)
    grids = tuple(tuple(int(v) for v in a.attrs["grid"]) for a in arrays)
    return EmbeddingCache(path, keys, bags, grids, attrs)
