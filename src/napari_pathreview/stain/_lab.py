"""RGB ↔ CIELAB in OpenCV's 8-bit convention, in torch, so batches match ``cv2.cvtColor``.

OpenCV stores 8-bit LAB as L·255/100, a+128, b+128 (sRGB, D65). Seed 001 published its
Reinhard target in exactly these units, so both our paths use them.
"""

from __future__ import annotations

from typing import Any

_RGB2XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_XYZ2RGB = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
_WHITE = (0.950456, 1.0, 1.088754)
_T = 0.008856
_KAPPA = 903.3


def _mix(matrix: Any, x: Any) -> Any:
    """Apply a 3×3 matrix over the channel dimension of N×3×H×W."""
    import torch

    return torch.einsum("ij,njhw->nihw", matrix, x)


def rgb255_to_lab8(rgb: Any) -> Any:
    """float N×3×H×W in [0, 255] → OpenCV 8-bit LAB (float, not rounded)."""
    import torch

    x = rgb / 255.0
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(0) ** 2.4)
    m = torch.tensor(_RGB2XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    xyz = _mix(m, lin) / white
    f = torch.where(xyz > _T, xyz.clamp_min(_T) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    y = xyz[:, 1:2]
    lum = torch.where(y > _T, 116.0 * f[:, 1:2] - 16.0, _KAPPA * y)
    a = 500.0 * (f[:, 0:1] - f[:, 1:2]) + 128.0
    b = 200.0 * (f[:, 1:2] - f[:, 2:3]) + 128.0
    return torch.cat([lum * (255.0 / 100.0), a, b], dim=1)


def lab8_to_rgb255(lab: Any) -> Any:
    """Inverse of :func:`rgb255_to_lab8`; output clipped to [0, 255], not rounded."""
    import torch

    lum = lab[:, 0:1] * (100.0 / 255.0)
    a = lab[:, 1:2] - 128.0
    b = lab[:, 2:3] - 128.0
    y = torch.where(lum <= _T * _KAPPA, lum / _KAPPA, ((lum + 16.0) / 116.0) ** 3)
    fy = torch.where(lum <= _T * _KAPPA, 7.787 * y + 16.0 / 116.0, (lum + 16.0) / 116.0)
    fx = a / 500.0 + fy
    fz = fy - b / 200.0
    thr = 0.206893
    xr = torch.where(fx > thr, fx**3, (fx - 16.0 / 116.0) / 7.787)
    zr = torch.where(fz > thr, fz**3, (fz - 16.0 / 116.0) / 7.787)
    white = torch.tensor(_WHITE, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    xyz = torch.cat([xr, y, zr], dim=1) * white
    m = torch.tensor(_XYZ2RGB, dtype=lab.dtype, device=lab.device)
    lin = _mix(m, xyz).clamp(0.0, 1.0)
    srgb = torch.where(
        lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055
    )
    return (srgb * 255.0).clamp(0.0, 255.0)
