"""Vahadane et al. (2016): sparse non-negative stain separation, without SPAMS.

The dictionary (2 stains × 3 channels) is learnt by alternating two exact steps on a strided
sample of tissue OD pixels: the sparse non-negative code of every pixel (a 2-variable
non-negative lasso, solved in closed form by checking its four active sets) and a
block-coordinate dictionary update with non-negativity and unit norm (as in scikit-learn's
dictionary learning). Starting from the Macenko estimate it converges in a few iterations.
Both steps are elementwise over pixels, so the torch path runs a whole batch at once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from napari_pathreview.stain._deconvolution import (
    PERCENTILE,
    DeconvolutionNormalizer,
    check_stains,
    min_tissue_ok,
    od_image,
    order_he,
    reconstruct_uint8,
)
from napari_pathreview.stain.macenko import (
    macenko_stains,
    macenko_stains_torch,
    max_concentrations_torch,
    order_he_torch,
)

#: L1 weight while learning the dictionary (SPAMS/StainTools default)
DICT_LAMBDA = 0.1
#: L1 weight for concentrations during transform (StainTools default)
CONC_LAMBDA = 0.01
#: sampled pixels (before the tissue mask) used for dictionary learning: 6 numbers to learn
MAX_DICT_PIXELS = 4_096
ITERATIONS = 15


def nonneg_lasso2(r0: Any, r1: Any, gram: Any, lam: float, debias: bool = False) -> tuple[Any, Any]:
    """Closed-form argmin_c≥0 ½‖x − c·W‖² + λ‖c‖₁ for two atoms, from (r0, r1) = W·x and G = W·Wᵀ.

    Works for numpy and torch; ``gram`` = (G00, G01, G11) broadcasts against ``r0``. The
    problem is strictly convex, so checking the four active sets in turn finds the optimum.
    With ``debias`` the active set is kept but the values are refitted without the L1
    shrinkage (relaxed lasso), which keeps the learnt dictionary from tilting by ~λ.
    Returns the two concentration arrays.
    """
    g00, g01, g11 = gram
    xp = np if isinstance(r0, np.ndarray) else __import__("torch")
    b0, b1 = r0 - lam, r1 - lam
    det = g00 * g11 - g01 * g01
    c0 = (g11 * b0 - g01 * b1) / det
    c1 = (g00 * b1 - g01 * b0) / det
    both = (c0 > 0) & (c1 > 0)
    s0 = xp.maximum(b0, 0 * b0) / g00  # only stain 0 active
    s1 = xp.maximum(b1, 0 * b1) / g11  # only stain 1 active
    only0 = ~both & (b1 - g01 * s0 <= 0) & (s0 > 0)
    only1 = ~both & ~only0 & (b0 - g01 * s1 <= 0) & (s1 > 0)
    if debias:
        c0, c1 = (g11 * r0 - g01 * r1) / det, (g00 * r1 - g01 * r0) / det
        s0, s1 = xp.maximum(r0, 0 * r0) / g00, xp.maximum(r1, 0 * r1) / g11
        c0, c1 = xp.maximum(c0, 0 * c0), xp.maximum(c1, 0 * c1)
    out0 = xp.where(both, c0, xp.where(only0, s0, 0 * s0))
    out1 = xp.where(both, c1, xp.where(only1, s1, 0 * s1))
    return out0, out1


def _gram(matrix: Any) -> tuple[Any, Any, Any]:
    m0, m1 = matrix[..., 0, :], matrix[..., 1, :]
    g = ((m0 * m0).sum(-1), (m0 * m1).sum(-1), (m1 * m1).sum(-1))
    return g[0], g[1], g[2]


def learn_dictionary(od: np.ndarray, init: np.ndarray, lam: float = DICT_LAMBDA) -> np.ndarray:
    """Sparse non-negative dictionary (2×3) of tissue OD pixels P×3, from ``init`` (numpy)."""
    dictionary = init.astype(np.float64).copy()
    od = od.astype(np.float64)
    for _ in range(ITERATIONS):
        proj = od @ dictionary.T
        code = np.stack(
            nonneg_lasso2(proj[:, 0], proj[:, 1], _gram(dictionary), lam, True), axis=-1
        )
        previous = dictionary.copy()
        dictionary = _update_dictionary(dictionary, code.T @ code, code.T @ od)
        if np.abs(dictionary - previous).max() < 1e-4:
            break
    return order_he(dictionary)


def _update_dictionary(dictionary: Any, a: Any, b: Any) -> Any:
    """One block-coordinate pass: atom k ← proj₊,‖·‖=1(atom k + (B_k − A_k·D) / A_kk)."""
    xp = np if isinstance(dictionary, np.ndarray) else __import__("torch")
    rows = []
    for k in range(2):
        current = dictionary if not rows else xp.stack([rows[0], dictionary[..., 1, :]], -2)
        step = (b[..., k, :] - (a[..., k, :, None] * current).sum(-2)) / (
            a[..., k, k, None] + 1e-12
        )
        atom = xp.maximum(dictionary[..., k, :] + step, 0 * step)
        norm = (
            (atom * atom).sum(-1, keepdims=True) ** 0.5
            if xp is np
            else atom.norm(dim=-1, keepdim=True)
        )
        fallback = dictionary[..., k, :]
        atom = xp.where(norm > 1e-8, atom / (norm + 1e-12), fallback)
        rows.append(atom)
    return xp.stack(rows, -2)


def vahadane_concentrations(
    od: np.ndarray, matrix: np.ndarray, lam: float = CONC_LAMBDA
) -> np.ndarray:
    """Non-negative sparse concentrations (…×2) of OD pixels (…×3) in a stain matrix."""
    proj = od @ matrix.T
    return np.stack(nonneg_lasso2(proj[..., 0], proj[..., 1], _gram(matrix), lam), axis=-1)


class VahadaneNormalizer(DeconvolutionNormalizer):
    """Vahadane normalisation; fitted state: ``stain_matrix`` (H, E rows), ``max_concentrations``.

    Args:
        stain_matrix: a target stain matrix to use without fitting (2×3).
        max_concentrations: the target's 99th-percentile concentrations (2,).
    """

    name: ClassVar[str] = "vahadane"

    def _estimate_od(self, od: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
        step = max(1, len(od) // MAX_DICT_PIXELS)
        tissue = od[::step][mask[::step]]
        if not min_tissue_ok(mask[::step]):
            return "no_tissue"
        init = macenko_stains(tissue)
        if check_stains(init, np.ones(2)) is not None:
            return "degenerate_stains"
        matrix = learn_dictionary(tissue, init)
        conc = vahadane_concentrations(od, matrix)
        max_conc = np.percentile(conc, PERCENTILE, axis=0)
        return check_stains(matrix, max_conc) or (matrix, max_conc)

    def _reconstruct_numpy(
        self, image: np.ndarray, matrix: np.ndarray, ratio: np.ndarray
    ) -> np.ndarray:
        proj = cv2.transform(
            od_image(image), np.vstack([matrix, np.zeros((1, 3))]).astype(np.float32)
        )
        c0, c1 = nonneg_lasso2(
            proj[..., 0], proj[..., 1], _gram(matrix.astype(np.float32)), CONC_LAMBDA
        )
        conc = np.dstack([c0, c1])
        return reconstruct_uint8(conc, ratio[:, None] * self.stain_matrix)

    def _estimate_torch(self, od: Any, mask: Any) -> tuple[Any, Any]:
        import torch

        step = max(1, od.shape[2] // MAX_DICT_PIXELS)
        x, sub_mask = od[:, :, ::step].contiguous(), mask[:, ::step]
        dictionary = macenko_stains_torch(x, sub_mask)
        weight = sub_mask.to(od.dtype)[:, None, :]
        for _ in range(ITERATIONS):
            gram = tuple(g[:, None] for g in _gram(dictionary))
            proj = dictionary @ x  # N×2×P
            code = (
                torch.stack(nonneg_lasso2(proj[:, 0], proj[:, 1], gram, DICT_LAMBDA, True), 1)
                * weight
            )
            previous = dictionary
            dictionary = _update_dictionary(
                dictionary, code @ code.transpose(1, 2), code @ x.transpose(1, 2)
            )
            if (dictionary - previous).abs().max() < 1e-4:
                break
        matrix = order_he_torch(dictionary)
        return matrix, max_concentrations_torch(self._concentrations_torch(od, matrix))

    def _concentrations_torch(self, od: Any, matrix: Any) -> Any:
        import torch

        gram = tuple(g[:, None] for g in _gram(matrix))
        proj = matrix @ od
        return torch.stack(nonneg_lasso2(proj[:, 0], proj[:, 1], gram, CONC_LAMBDA), 1)
