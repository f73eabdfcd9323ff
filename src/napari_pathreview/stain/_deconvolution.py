"""Shared machinery of the stain-deconvolution normalisers (Macenko, Vahadane).

Both model optical density as concentrations × a 2×3 stain matrix (rows H then E, unit
vectors). Normalising an image means: estimate its own stain matrix and 99th-percentile
concentrations on a strided pixel sample, express every pixel in its own stains, rescale the
concentrations to the target's maxima and recompose with the target's stains. Subclasses
supply the estimator and the concentration solver, for numpy (one image) and torch (a batch).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np

from napari_pathreview.stain.base import (
    MAX_SAMPLE_PIXELS,
    MIN_TISSUE_PIXELS,
    OD_BETA,
    OD_LUT,
    OD_SCALE,
    StainNormalizer,
    sample_stride,
)

#: largest uint8 value whose OD reaches β (219 for β = 0.15)
TISSUE_MAX_LEVEL = int(np.nonzero(OD_LUT >= OD_BETA)[0].max())
#: stains closer than this cosine cannot be told apart: the tile is "degenerate_stains"
MAX_STAIN_COSINE = 0.995
#: concentrations below this at the 99th percentile mean there is no stain to rescale
MIN_MAX_CONCENTRATION = 1e-3
#: a stain vector shorter than this is no colour at all (every pixel would come out white)
MIN_STAIN_NORM = 1e-6
PERCENTILE = 99.0


def order_he(matrix: np.ndarray) -> np.ndarray:
    """Unit rows, haematoxylin first: H absorbs more red than eosin does (Macenko's heuristic)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if np.abs(norms - 1.0).max() > 1e-12:
        matrix = matrix / np.maximum(norms, 1e-12)
    return matrix if matrix[0, 0] >= matrix[1, 0] else matrix[::-1].copy()


def sample_od(
    image: np.ndarray, max_pixels: int = MAX_SAMPLE_PIXELS
) -> tuple[np.ndarray, np.ndarray]:
    """Strided pixel sample as OD (P×3 float32) and its tissue mask (every channel OD ≥ β).

    The mask is computed on the uint8 values (OD ≥ β ⇔ value ≤ ``TISSUE_MAX_LEVEL``), which
    is the same test as on OD, only cheaper.
    """
    flat = image.reshape(-1, 3)[:: sample_stride(image.shape[0], image.shape[1], max_pixels)]
    mask = flat[:, 0] <= TISSUE_MAX_LEVEL
    mask &= flat[:, 1] <= TISSUE_MAX_LEVEL
    mask &= flat[:, 2] <= TISSUE_MAX_LEVEL
    return OD_LUT[flat], mask


def covariance3(x: np.ndarray) -> np.ndarray:
    """3×3 sample covariance of P×3 float32 pixels (one small BLAS call, no float64 copy)."""
    centred = x - x.mean(axis=0)
    return centred.T @ centred / max(len(x) - 1, 1)


def reconstruct_uint8(x: np.ndarray, to_od: np.ndarray) -> np.ndarray:
    """uint8 RGB whose OD is ``x @ to_od`` (x: H×W×k float32; to_od: k×3), in three OpenCV passes.

    The offset ln 256 rides in the affine transform and ``subtract`` rounds and saturates, so
    256·exp(−OD) − 1 never needs separate multiply, clip and cast passes.
    """
    import cv2

    affine = np.hstack([-to_od.T, np.full((3, 1), np.log(OD_SCALE))]).astype(np.float32)
    return cv2.subtract(cv2.exp(cv2.transform(x, affine)), (1.0, 1.0, 1.0, 0.0), dtype=cv2.CV_8U)


def od_image(image: np.ndarray) -> np.ndarray:
    """H×W×3 float32 OD of a uint8 RGB image through a look-up table (OpenCV, one pass)."""
    import cv2

    return cv2.LUT(image, OD_LUT_3)


OD_LUT_3 = np.repeat(OD_LUT[:, None], 3, axis=1).reshape(256, 1, 3)


def check_stains(matrix: np.ndarray, max_conc: np.ndarray) -> str | None:
    """Why an estimated (stain matrix, maxima) pair is unusable, or None."""
    if not (np.isfinite(matrix).all() and np.isfinite(max_conc).all()):
        return "degenerate_stains"
    if np.linalg.norm(matrix, axis=1).min() < MIN_STAIN_NORM:  # no colour: every pixel white
        return "degenerate_stains"
    if float(matrix[0] @ matrix[1]) > MAX_STAIN_COSINE or max_conc.min() < MIN_MAX_CONCENTRATION:
        return "degenerate_stains"
    return None


def pinv_rows(matrix: Any) -> Any:
    """Pseudo-inverse (…×3×2) of …×2×3 stain matrices via the 2×2 Gram (works for np and torch)."""
    g00 = (matrix[..., 0, :] * matrix[..., 0, :]).sum(-1)
    g11 = (matrix[..., 1, :] * matrix[..., 1, :]).sum(-1)
    g01 = (matrix[..., 0, :] * matrix[..., 1, :]).sum(-1)
    det = g00 * g11 - g01 * g01
    det = np.maximum(det, 1e-12) if isinstance(det, np.ndarray | float) else det.clamp_min(1e-12)
    inv = [[g11 / det, -g01 / det], [-g01 / det, g00 / det]]
    r0 = inv[0][0][..., None] * matrix[..., 0, :] + inv[0][1][..., None] * matrix[..., 1, :]
    r1 = inv[1][0][..., None] * matrix[..., 0, :] + inv[1][1][..., None] * matrix[..., 1, :]
    if isinstance(matrix, np.ndarray):
        return np.stack([r0, r1], axis=-1)
    import torch

    return torch.stack([r0, r1], dim=-1)


def masked_quantile(values: Any, mask: Any, q: float) -> Any:
    """Linear-interpolated quantile along the last dim over ``mask`` (torch, batched; NaN-free).

    Only the tail beyond ``q`` is ordered (``topk``), not the whole row: the 1st/99th
    percentiles need about 1 % of the values, which is most of the batched path's saving.
    """
    import torch

    count = mask.sum(-1)
    size = values.shape[-1]
    upper = q >= 0.5
    k = min(size, int(math.ceil((1.0 - q if upper else q) * (size - 1))) + 2)
    fill = float("-inf") if upper else float("inf")
    filled = torch.where(mask, values, torch.full_like(values, fill))
    tail = filled.topk(k, dim=-1, largest=upper, sorted=True).values
    last = (count - 1).clamp_min(0).to(values.dtype)
    rank = last - q * last if upper else q * last  # rank counted from the tail's extreme
    lo = rank.floor().long().clamp(0, k - 1)
    hi = torch.minimum(lo + 1, last.long()).clamp(0, k - 1)
    frac = rank - lo.to(values.dtype)
    v_lo = tail.gather(-1, lo[..., None]).squeeze(-1)
    v_hi = tail.gather(-1, hi[..., None]).squeeze(-1)
    out = v_lo + (v_hi - v_lo) * frac
    return torch.where(count > 0, out, torch.zeros_like(out)).nan_to_num(0.0, 0.0, 0.0)


def torch_od(batch: Any) -> Any:
    """float N×3×H×W in [0, 255] → OD with the same formula as ``OD_LUT`` (float inputs too)."""
    import torch

    return -torch.log((batch + 1.0) / OD_SCALE)


class DeconvolutionNormalizer(StainNormalizer):
    """Base of Macenko and Vahadane: target ``stain_matrix`` (2×3), ``max_concentrations`` (2,)."""

    def __init__(self, stain_matrix: Any = None, max_concentrations: Any = None) -> None:
        super().__init__()
        self.stain_matrix: np.ndarray | None = None
        self.max_concentrations: np.ndarray | None = None
        if stain_matrix is not None:
            conc = [1.9705, 1.0308] if max_concentrations is None else max_concentrations
            self._load_state({"stain_matrix": stain_matrix, "max_concentrations": conc})

    @property
    def is_fitted(self) -> bool:
        return self.stain_matrix is not None

    def estimate(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
        """(stain matrix, 99th-percentile concentrations) of one uint8 RGB image, or a reason
        ("no_tissue", "degenerate_stains")."""
        od, mask = sample_od(image)
        if not min_tissue_ok(mask):
            return "no_tissue"
        return self._estimate_od(od, mask)

    # ---- per-method hooks ----------------------------------------------------------------
    @abstractmethod
    def _estimate_od(self, od: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
        """:meth:`estimate` from an image's sampled OD pixels (P×3) and their tissue mask (P,),
        which holds enough tissue."""

    @abstractmethod
    def _reconstruct_numpy(
        self, image: np.ndarray, matrix: np.ndarray, ratio: np.ndarray
    ) -> np.ndarray:
        """The normalised uint8 image from its own stains (2×3) and the target-to-own
        concentration ratios (2,)."""

    @abstractmethod
    def _estimate_torch(self, od: Any, mask: Any) -> tuple[Any, Any]:
        """Batched stain matrices N×2×3 (H first) and maxima N×2 from sampled OD N×3×P."""

    @abstractmethod
    def _concentrations_torch(self, od: Any, matrix: Any) -> Any:
        """Concentrations N×2×P of OD N×3×P in stains N×2×3."""

    # ---- fitting -------------------------------------------------------------------------
    def _image_stats(self, image: np.ndarray) -> Any | None:
        result = self.estimate(image)
        return None if isinstance(result, str) else result

    def _combine_stats(self, stats: list[Any]) -> None:
        matrices = np.stack([order_he(m) for m, _ in stats])
        maxima = np.stack([c for _, c in stats])
        self._load_state(
            {
                "stain_matrix": order_he(np.median(matrices, axis=0)),
                "max_concentrations": np.median(maxima, axis=0),
            }
        )

    # ---- transform -----------------------------------------------------------------------
    def _transform_numpy(self, image: np.ndarray) -> tuple[np.ndarray, str | None]:
        found = self.estimate(image)
        if isinstance(found, str):
            return image, found
        matrix, max_conc = found
        ratio = self.max_concentrations / np.maximum(max_conc, MIN_MAX_CONCENTRATION)
        return self._reconstruct_numpy(image, matrix, ratio), None

    def _transform_torch(self, batch: Any) -> tuple[Any, Any]:
        import torch

        n, _, h, w = batch.shape
        od = torch_od(batch).flatten(2)  # N×3×HW, channel-first keeps every matmul contiguous
        sample = od[:, :, :: sample_stride(h, w)].contiguous()
        mask = (sample >= OD_BETA).all(1)
        matrix, max_conc = self._estimate_torch(sample, mask)
        codes = torch.zeros(n, dtype=torch.long, device=batch.device)
        cosine = (matrix[:, 0] * matrix[:, 1]).sum(-1)
        bad = (cosine > MAX_STAIN_COSINE) | (max_conc.amin(-1) < MIN_MAX_CONCENTRATION)
        bad |= ~(torch.isfinite(matrix).flatten(1).all(1) & torch.isfinite(max_conc).all(1))
        codes[bad] = 3
        codes[mask.sum(-1) < MIN_TISSUE_PIXELS] = 1
        target = torch.as_tensor(self.stain_matrix, dtype=od.dtype, device=od.device)
        t_max = torch.as_tensor(self.max_concentrations, dtype=od.dtype, device=od.device)
        ratio = t_max / max_conc.clamp_min(MIN_MAX_CONCENTRATION)
        out_od = self._reconstruct_torch(od, matrix.nan_to_num(0.0), ratio, target)
        out = OD_SCALE * torch.exp(-out_od.nan_to_num(0.0, 0.0, 0.0)) - 1.0
        return out.view(n, 3, h, w).clamp(0, 255), codes

    def _reconstruct_torch(self, od: Any, matrix: Any, ratio: Any, target: Any) -> Any:
        """Target-stain OD N×3×HW from the source OD, stains (N×2×3) and concentration ratios."""
        return target.T @ (self._concentrations_torch(od, matrix) * ratio[:, :, None])

    def _state(self) -> dict[str, Any]:
        return {
            "stain_matrix": self.stain_matrix.tolist(),
            "max_concentrations": self.max_concentrations.tolist(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        matrix = np.asarray(state["stain_matrix"], dtype=np.float64).reshape(2, 3)
        conc = np.asarray(state["max_concentrations"], dtype=np.float64).reshape(2)
        if check_stains(order_he(matrix), conc) is not None:
            raise ValueError(
                "stain_matrix rows must be finite, non-zero and distinct, maxima positive"
            )
        self.stain_matrix = order_he(matrix).astype(np.float64)
        self.max_concentrations = conc


def min_tissue_ok(mask: np.ndarray) -> bool:
    """Whether a sampled tissue mask holds enough pixels to estimate stains."""
    return int(mask.sum()) >= MIN_TISSUE_PIXELS
