"""Seed 000: CSPResNet50 with FPN-style 3-scale aggregation, SE, avg+max pooling and a dense neck.

The paper gives the parts but not their sizes; we read them as follows. Backbone: timm
``cspresnet50`` (stages at stride 8, 16, 32: 256, 512, 1024 channels). FPN: 1×1 laterals to 256
channels, top-down nearest upsampling and addition, a 3×3 smoothing conv per level. Each level:
squeeze-and-excitation, then global average and global max pooling concatenated (2 × 256), the
three levels giving the paper's 1536-d descriptor. Neck: four dense stages
1536 → 1024 → 512 → 256 → 128 (Linear, BatchNorm1d, GELU, Dropout), then the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import SEModule
from torch import nn

from napari_pathreview.models._registry import register_model
from napari_pathreview.models.base import ModelSpec, PathReviewModel
from napari_pathreview.models.pretrained import create_timm
from napari_pathreview.models.timm_classifier import timm_stage_groups

BACKBONE = "cspresnet50"  # the paper's trunk; ``backbone=`` takes another timm CSP model
FPN_CHANNELS = 256
NECK_WIDTHS: tuple[int, ...] = (1024, 512, 256, 128)


class ConvBnAct(nn.Sequential):
    """Conv → BatchNorm → ReLU, the FPN's smoothing unit."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class FpnSe(nn.Module):
    """Top-down FPN over the given levels, with SE on every output level (finest first)."""

    def __init__(self, in_channels: Sequence[int], channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(ConvBnAct(channels, channels, 3) for _ in in_channels)
        self.se = nn.ModuleList(SEModule(channels, rd_ratio=1 / 16) for _ in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + F.interpolate(merged[0], size=lateral.shape[-2:]))
        return [se(smooth(m)) for se, smooth, m in zip(self.se, self.smooth, merged, strict=True)]


def dense_neck(in_features: int, widths: Sequence[int], drop_rate: float) -> nn.Sequential:
    """The paper's four-stage dense neck: Linear → BatchNorm1d → GELU → Dropout per stage."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.GELU()]
        layers.append(nn.Dropout(drop_rate))
        in_features = width
    return nn.Sequential(*layers)


class CspResNetFpnSe(PathReviewModel):
    """Seed 000's multi-scale CSPResNet50 classifier.

    Args:
        num_classes: Width of the logits.
        pretrained: ImageNet weights for the cspresnet50 backbone.
        pretrained_path: Local safetensors file or folder for them.
        drop_rate: Dropout in the dense neck.
        backbone: timm CSP model to use (cspresnet50 in the paper).
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        drop_rate: float = 0.3,
        backbone: str = BACKBONE,
    ) -> None:
        super().__init__()
        self.backbone = create_timm(
            backbone, pretrained=pretrained, pretrained_path=pretrained_path, num_classes=0
        )
        self.indices = [len(self.backbone.feature_info) - i for i in (3, 2, 1)]
        channels = [self.backbone.feature_info[i]["num_chs"] for i in self.indices]
        self.backbone.prune_intermediate_layers(self.indices, prune_head=True)
        self.fpn = FpnSe(channels)
        self.pool_features = 2 * FPN_CHANNELS * len(channels)  # 1536: avg + max per level
        self.neck = dense_neck(self.pool_features, NECK_WIDTHS, drop_rate)
        self.classifier = nn.Linear(NECK_WIDTHS[-1], num_classes)
        self.spec = ModelSpec(architecture="cspresnet50_fpn_se", num_classes=num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1536-d multi-scale descriptor (avg ‖ max pooled SE-FPN levels)."""
        features = self.backbone.forward_intermediates(
            x, indices=self.indices, intermediates_only=True
        )
        pooled = []
        for level in self.fpn(features):
            pooled += [level.mean(dim=(2, 3)), level.amax(dim=(2, 3))]
        return torch.cat(pooled, dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        features = self.neck(features)
        return features if pre_logits else self.classifier(features)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(NECK_WIDTHS[-1], num_classes)
        self._set_num_classes(num_classes)

    def cam_target_layers(self) -> list[nn.Module]:
        """The finest SE-FPN level (stride 8): it carries all three scales after the top-down."""
        return [self.fpn.se[0]]

    def _parameter_group_modules(self) -> list[tuple[str, Sequence[nn.Module]]]:
        stages = timm_stage_groups(self.backbone)
        return [*stages, ("fpn", [self.fpn]), ("neck", [self.neck]), ("head", [self.classifier])]


@register_model("cspresnet50_fpn_se", backbones=lambda backbone=BACKBONE, **_: (str(backbone),))
def cspresnet50_fpn_se(num_classes: int, **kwargs: object) -> CspResNetFpnSe:
    """Seed 000 (CSPResNet50 + FPN + SE + avg/max pooling + dense neck)."""
    return CspResNetFpnSe(num_classes, **kwargs)
