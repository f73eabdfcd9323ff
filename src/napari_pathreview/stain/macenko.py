"""Macenko et al. (2009): stains from the two main optical-density directions.

Tissue OD pixels (every channel ≥ β = 0.15) span a plane; its basis comes from ``eigh`` of the
3×3 covariance (not an SVD of the pixel matrix), and the stains are the directions at the
α-th and (100-α)-th percentile angles in that plane. Because Macenko's concentrations are a
linear solve, the whole normalisation is a single 3×3 map in OD space, which the numpy path
applies with OpenCV in one pass over the image.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from napari_pathreview.stain._deconvolution import (
    PERCENTILE,
    DeconvolutionNormalizer,
    check_stains,
    covariance3,
    masked_quantile,
    od_image,
    order_he,
    pinv_rows,
    reconstruct_uint8,
)

#: angle percentile (Macenko's α)
ALPHA = 1.0


def macenko_stains(od: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Stain matrix (2×3, H first) from tissue OD pixels P×3 (numpy)."""
    cov = covariance3(od)
    _, vecs = np.linalg.eigh(cov)
    plane = vecs[:, [2, 1]]
    if plane[:, 0].sum() < 0:
        plane[:, 0] = -plane[:, 0]
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100.0 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    return order_he(np.stack([v1, v2]))


def macenko_stains_torch(od: Any, mask: Any, alpha: float = ALPHA) -> Any:
    """Batched :func:`macenko_stains`: OD N×3×P with tissue mask N×P → N×2×3 (H first)."""
    import torch

    weight = mask.to(od.dtype)[:, None, :]
    count = weight.sum(2, keepdim=True).clamp_min(2.0)
    mean = (od * weight).sum(2, keepdim=True) / count
    centred = (od - mean) * weight
    cov = centred @ centred.transpose(1, 2) / (count - 1.0)
    cov = cov + torch.eye(3, dtype=od.dtype, device=od.device) * 1e-10
    _, vecs = torch.linalg.eigh(cov)
    plane = vecs[:, :, [2, 1]]
    flip = torch.where(plane[:, :, 0].sum(1) < 0, -1.0, 1.0).to(od.dtype)
    plane = torch.cat([plane[:, :, :1] * flip[:, None, None], plane[:, :, 1:]], dim=2)
    proj = plane.transpose(1, 2) @ od  # N×2×P
    phi = torch.atan2(proj[:, 1], proj[:, 0])
    lo = masked_quantile(phi, mask, alpha / 100.0)
    hi = masked_quantile(phi, mask, 1.0 - alpha / 100.0)
    v1 = (plane @ torch.stack([lo.cos(), lo.sin()], -1)[..., None]).squeeze(-1)
    v2 = (plane @ torch.stack([hi.cos(), hi.sin()], -1)[..., None]).squeeze(-1)
    return order_he_torch(torch.stack([v1, v2], dim=1))


def order_he_torch(matrix: Any) -> Any:
    """Batched :func:`order_he` for N×2×3."""
    import torch

    matrix = matrix / matrix.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    swap = (matrix[:, 0, 0] < matrix[:, 1, 0])[:, None, None]
    return torch.where(swap, matrix.flip(1), matrix)


class MacenkoNormalizer(DeconvolutionNormalizer):
    """Macenko normalisation; fitted state: ``stain_matrix`` (H, E rows), ``max_concentrations``.

    Args:
        stain_matrix: a target stain matrix to use without fitting (2×3).
        max_concentrations: the target's 99th-percentile concentrations (2,).
    """

    name: ClassVar[str] = "macenko"

    def _estimate_od(self, od: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
        matrix = macenko_stains(od[mask])
        conc = od @ pinv_rows(matrix)
        max_conc = np.percentile(conc, PERCENTILE, axis=0)
        return check_stains(matrix, max_conc) or (matrix, max_conc)

    def _reconstruct_numpy(
        self, image: np.ndarray, matrix: np.ndarray, ratio: np.ndarray
    ) -> np.ndarray:
        mapping = pinv_rows(matrix) @ (ratio[:, None] * self.stain_matrix)  # OD_out = OD @ mapping
        return reconstruct_uint8(od_image(image), mapping)

    def _estimate_torch(self, od: Any, mask: Any) -> tuple[Any, Any]:
        matrix = macenko_stains_torch(od, mask)
        return matrix, max_concentrations_torch(self._concentrations_torch(od, matrix))

    def _concentrations_torch(self, od: Any, matrix: Any) -> Any:
        return pinv_rows(matrix).transpose(1, 2) @ od

    def _reconstruct_torch(self, od: Any, matrix: Any, ratio: Any, target: Any) -> Any:
        # concentrations are linear in OD, so the whole map is one 3×3 per tile
        mapping = target.T @ (ratio[:, :, None] * pinv_rows(matrix).transpose(1, 2))
        return mapping @ od


def max_concentrations_torch(conc: Any) -> Any:
    """99th percentile of N×2×P concentrations over all sampled pixels → N×2."""
    import torch

    every = torch.ones(conc.shape[::2], dtype=torch.bool, device=conc.device)
    return torch.stack(
        [masked_quantile(conc[:, k], every, PERCENTILE / 100.0) for k in range(2)], dim=-1
    )
