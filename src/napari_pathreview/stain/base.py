"""The shared mechanics of every stain normaliser: input checks, optical density, fitting, dispatch.

One base class owns what all methods have in common (as pytorch-grad-cam's base owns hooks):
validating and routing numpy images and torch batches, streaming ``fit`` over many images,
passing blank or unsupported tiles through unchanged with a flag, and JSON state. Each method
overrides a handful of small hooks: per-image statistics, how to combine them, and the two
transform kernels (numpy for one image, torch for a batch).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from napari_pathreview.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Optical density is computed as ``-ln((I + 1) / 256)``: 0 for white, finite for black.
OD_SCALE = 256.0
#: A pixel is tissue for stain estimation when every channel's OD reaches this (Macenko's beta).
OD_BETA = 0.15
#: Largest number of pixels a stain estimate looks at; more add time, not accuracy.
MAX_SAMPLE_PIXELS = 32_768
#: Fewer tissue pixels than this and a tile is passed through as "no_tissue".
MIN_TISSUE_PIXELS = 16
#: Float tensors hold [0, 1]; values this far outside (rounding) are still accepted.
FLOAT_SLACK = 1e-3
#: Look-up table uint8 value -> optical density (float32).
OD_LUT = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / OD_SCALE)).astype(np.float32)


class StainFitError(InvalidInputError):
    """``fit`` saw no usable tissue (blank, flat or tiny images) and has nothing to learn from."""


class NotFittedError(InvalidInputError):
    """``transform`` or ``to_dict`` ran before ``fit`` (or a preset) gave a target."""


def rgb_to_od(image: np.ndarray) -> np.ndarray:
    """Optical density of a uint8 RGB array via a look-up table (no log per pixel)."""
    return OD_LUT[image]


def od_to_rgb(od: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_od`, rounded and clipped to uint8 (NaN-safe)."""
    od = np.nan_to_num(od, nan=0.0, posinf=OD_LUT[0], neginf=0.0)
    rgb = OD_SCALE * np.exp(-od) - 1.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def sample_stride(height: int, width: int, max_pixels: int = MAX_SAMPLE_PIXELS) -> int:
    """Stride over flattened pixels so that at most ``max_pixels`` are sampled (deterministic)."""
    total = height * width
    return max(1, -(-total // max_pixels))


def check_numpy_image(image: np.ndarray) -> str | None:
    """Why a numpy array cannot be normalised as is (None when it is uint8 H×W×3).

    Raises:
        InvalidInputError: for shapes that are not an image at all.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(
            f"expected a numpy array or torch tensor, got {type(image).__name__}"
        )
    if image.size == 0:
        raise InvalidInputError(f"empty image of shape {image.shape}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return "grayscale"
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidInputError(
            f"expected an H×W×3 RGB image, got shape {image.shape}; convert it with "
            "napari_pathreview.io.to_rgb_uint8"
        )
    if image.shape[2] == 4:
        return "rgba"
    if image.dtype != np.uint8:
        return f"dtype_{image.dtype}"
    return None


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Convert anything image-like to uint8 H×W×3 for fitting (grayscale, RGBA, uint16, float)."""
    if hasattr(image, "detach") and hasattr(image, "cpu"):
        image = tensor_to_numpy_images(image)
        if len(image) != 1:
            raise InvalidInputError("pass a batch of tensors as an iterable of images")
        return image[0]
    from napari_pathreview.io import to_rgb_uint8 as io_to_rgb

    return io_to_rgb(np.asarray(image))


def float_tiles_in_range(batch: Any) -> Any:
    """Per tile of a float N×…: True when every value is finite and within [0, 1] (± slack).

    The one rule for float tensors, shared by ``transform`` (which passes other tiles through
    flagged) and ``fit`` / QC (which refuse them).
    """
    finite = batch.isfinite().flatten(1).all(1)
    values = batch.nan_to_num(0.0).flatten(1)
    return finite & (values.amax(1) <= 1.0 + FLOAT_SLACK) & (values.amin(1) >= -FLOAT_SLACK)


def tensor_to_numpy_images(tensor: Any) -> list[np.ndarray]:
    """N×3×H×W (or 3×H×W) tensor → list of uint8 H×W×3 arrays, for fitting on tensors.

    Raises:
        InvalidInputError: for a float tensor outside [0, 1] (0-255 floats would be clipped
            to white) or an integer tensor other than uint8 (its scale is unknown).
    """
    import torch

    t = tensor.detach().cpu()
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise InvalidInputError(f"expected an N×3×H×W tensor, got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not bool(float_tiles_in_range(t).all()):
            values = t[t.isfinite()]
            span = f"{float(values.min()):g} to {float(values.max()):g}" if values.numel() else ""
            raise InvalidInputError(
                f"float tensors must hold finite values in [0, 1], got {span}"
                f"{'' if bool(t.isfinite().all()) else ' and NaN/inf'}; "
                "divide 0-255 pixels by 255"
            )
        t = (t.clamp(0, 1) * 255).round().to(dtype=torch.uint8)
    elif t.dtype != torch.uint8:
        raise InvalidInputError(
            f"expected a uint8 tensor or a float tensor in [0, 1], got {t.dtype}; "
            "convert it first (e.g. .to(torch.uint8) for 0-255 values)"
        )
    return [np.ascontiguousarray(img) for img in t.permute(0, 2, 3, 1).numpy()]


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def iter_images(images: Any) -> Iterable[np.ndarray]:
    """One image, a tensor batch, or an iterable (streamed) → uint8 RGB images one at a time."""
    if isinstance(images, np.ndarray):
        yield to_rgb_uint8(images)
        return
    if _is_tensor(images):
        yield from tensor_to_numpy_images(images)
        return
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise InvalidInputError(
            "fit expects an image, a tensor batch or an iterable of images, "
            f"got {type(images).__name__}"
        )
    for item in images:
        if hasattr(item, "__fspath__") or isinstance(item, str):
            from napari_pathreview.stain._imageio import read_rgb

            item = read_rgb(item)
        yield from iter_images(item)


class StainNormalizer(ABC):
    """Base of every normaliser: sklearn-style ``fit`` / ``transform`` plus JSON state.

    ``transform`` accepts a numpy uint8 H×W×3 image (returns uint8) or a torch N×3×H×W batch,
    uint8 or float in [0, 1] on any device (returns the same dtype and device). Tiles that cannot
    be normalised (no tissue, one flat colour, unsupported dtype) come back unchanged and are named
    in ``last_flags`` (one entry per image, None when it was normalised) and in one logged warning.
    """

    name: ClassVar[str] = "base"

    def __init__(self) -> None:
        self.last_flags: list[str | None] = []

    # ---- hooks each method implements -------------------------------------------------
    @abstractmethod
    def _image_stats(self, image: np.ndarray) -> Any | None:
        """Statistics of one uint8 RGB image for fitting, or None if it holds no usable tissue."""

    @abstractmethod
    def _combine_stats(self, stats: list[Any]) -> None:
        """Set the fitted target from per-image statistics (at least one)."""

    @abstractmethod
    def _transform_numpy(self, image: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Normalise one uint8 RGB image → (output, flag); output is the input when flagged."""

    @abstractmethod
    def _transform_torch(self, batch: Any) -> tuple[Any, Any]:
        """Normalise float32 N×3×H×W in [0, 255] → (output, per-tile reason codes, 0 = ok)."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The fitted target as JSON-able values."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` wrote."""

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """Whether a target is set."""

    #: reason codes the torch kernels return per tile (index = code)
    REASONS: ClassVar[tuple[str | None, ...]] = (
        None,
        "no_tissue",
        "low_contrast",
        "degenerate_stains",
    )

    # ---- public API ----------------------------------------------------------------------
    def fit(self, images: Any) -> StainNormalizer:
        """Learn the target from one image or a stream of images (bounded memory).

        Raises:
            StainFitError: if no image had usable tissue.
        """
        stats, skipped = [], 0
        for image in iter_images(images):
            item = self._image_stats(image)
            if item is None:
                skipped += 1
            else:
                stats.append(item)
        if not stats:
            raise StainFitError(
                f"{self.name}: no tissue to fit on ({skipped} image(s) blank, flat or too small); "
                "pick target images that show stained tissue"
            )
        if skipped:
            logger.warning("%s fit skipped %d blank or flat image(s)", self.name, skipped)
        self._combine_stats(stats)
        return self

    def transform(self, x: Any) -> Any:
        """Normalise a numpy image or a torch batch; see the class docstring for the contract."""
        if not self.is_fitted:
            raise NotFittedError(
                f"{self.name} normaliser is not fitted: call fit() or load a target"
            )
        if _is_tensor(x):
            return self._dispatch_torch(x)
        reason = check_numpy_image(x)
        if reason is None:
            out, reason = self._transform_numpy(np.ascontiguousarray(x))
        else:
            out = x
        self._record([reason])
        return out

    def fit_transform(self, image: Any) -> Any:
        """Fit to ``image`` then normalise it (mostly useful in tests)."""
        return self.fit(image).transform(image)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fitted state, with ``method``; read back by ``normalizer_from_dict``."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} normaliser is not fitted; nothing to save")
        return {"method": self.name, "version": 1, **self._state()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> StainNormalizer:
        """A fitted normaliser from :meth:`to_dict` output."""
        if state.get("method") != cls.name:
            raise InvalidInputError(f"state is for {state.get('method')!r}, not {cls.name!r}")
        obj = cls()
        try:
            obj._load_state(state)
        except KeyError as error:  # str(KeyError) is only the quoted key
            fields = ", ".join(repr(k) for k in state if k not in ("method", "version"))
            raise InvalidInputError(
                f"invalid {cls.name} stain target: missing {error.args[0]!r} "
                f"(it has {fields or 'no fields'}); write one with `pathreview stain fit`"
            ) from error
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"invalid {cls.name} stain target: {error}") from error
        return obj

    # ---- internals -----------------------------------------------------------------------
    def _record(self, flags: list[str | None]) -> None:
        self.last_flags = flags
        flagged = [f for f in flags if f is not None]
        if flagged:
            counts = {f: flagged.count(f) for f in dict.fromkeys(flagged)}
            logger.warning(
                "%s: %d of %d image(s) returned unchanged: %s",
                self.name,
                len(flagged),
                len(flags),
                ", ".join(f"{k} ×{v}" for k, v in counts.items()),
            )

    def _dispatch_torch(self, x: Any) -> Any:
        import torch

        single = x.ndim == 3
        batch = x[None] if single else x
        if batch.ndim != 4 or batch.numel() == 0:
            raise InvalidInputError(f"expected an N×3×H×W tensor, got shape {tuple(x.shape)}")
        n = batch.shape[0]
        if batch.shape[1] != 3:
            self._record([f"channels_{batch.shape[1]}"] * n)
            return x
        if batch.dtype == torch.uint8:
            work = batch.float()
            bad = torch.zeros(n, dtype=torch.bool, device=batch.device)
        elif batch.is_floating_point():
            bad = ~float_tiles_in_range(batch)
            work = (batch.nan_to_num(0.0).clamp(0, 1) * 255.0).float()
        else:
            self._record([f"dtype_{str(batch.dtype).removeprefix('torch.')}"] * n)
            return x
        out, codes = self._transform_torch(work)
        codes = codes.clone()
        codes[bad] = -1
        ok = (codes == 0).view(n, 1, 1, 1)
        if batch.dtype == torch.uint8:
            result = torch.where(ok, out.round().clamp(0, 255).to(torch.uint8), batch)
        else:
            result = torch.where(ok, (out / 255.0).clamp(0, 1).to(batch.dtype), batch)
        codes_list = codes.tolist()
        self._record([self.REASONS[c] if c >= 0 else "float_out_of_range" for c in codes_list])
        return result[0] if single else result
