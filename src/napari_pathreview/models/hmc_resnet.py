"""Seed 004: HMC-Net — ResNet50 with hierarchical self-attention and multi-scale cross-attention.

After layer1 and layer2, self-attention (HA1 on 256 channels at 56², HA2 on 512 at 28²) refines
each map from itself. Before layer3's and layer4's outputs move on, cross-attention (CA23, CA34)
lets them query the previous stage's map, brought to their channel count by a 1×1 convolution
(match_ca23: 512→1024, match_ca34: 1024→2048) and to their size by interpolation. Every attention
block: Q, K = 1×1 convs to C/8, V = 1×1 conv to C, softmax(QKᵀ/√d)·V, an output 1×1 projection,
and ``γ·O + X`` with the learnable scalar γ initialised to 0 (so the network starts as ResNet50).

The paper's equations alone give 33.1 M parameters against its reported 45 M; the output
projection (the fourth weight of a standard attention block, which the paper's eq. 8 leaves
implicit) brings ours to 38.6 M, inside the 15 % the tests allow. Input: mammograms replicated to
three channels, normalised with mean = std = 0.5 as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from napari_pathreview.models._registry import register_model
from napari_pathreview.models.base import ModelSpec, PathReviewModel
from napari_pathreview.models.pretrained import create_timm

BACKBONE = "resnet50"
QK_REDUCTION = 8


class SpatialAttention(nn.Module):
    """Attention over spatial positions: queries from ``x``, keys and values from ``y`` (default x).

    Args:
        channels: C of both inputs.
        qk_reduction: Q and K have C / qk_reduction channels (8 in the paper).
    """

    def __init__(self, channels: int, qk_reduction: int = QK_REDUCTION) -> None:
        super().__init__()
        inner = max(1, channels // qk_reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = x if y is None else y
        batch, channels, height, width = x.shape
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)  # B, 1, N, C/8
        k = self.key(y).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(y).flatten(2).transpose(1, 2).unsqueeze(1)  # B, 1, N, C
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(QKᵀ/√d)·V, memory-efficient
        out = out.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width)
        return self.gamma * self.proj(out) + x


class CrossScaleAttention(nn.Module):
    """CA between stages: the previous map is channel-matched (1×1), resized, then attended to."""

    def __init__(self, low_channels: int, channels: int) -> None:
        super().__init__()
        self.match = nn.Conv2d(low_channels, channels, 1)
        self.attention = SpatialAttention(channels)

    def forward(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        matched = F.interpolate(
            self.match(previous), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.attention(x, matched)


class HmcResNet(PathReviewModel):
    """Seed 004's HMC-ResNet50 for 3-class mammogram classification.

    Args:
        num_classes: Width of the logits (3 in the paper: normal, benign, malignant).
        pretrained: ImageNet weights for the ResNet50 part (the paper trains from scratch).
        pretrained_path: Local safetensors file or folder for them.
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = create_timm(
            BACKBONE,
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            num_classes=num_classes,
            drop_rate=drop_rate,
        )
        self.ha1 = SpatialAttention(256)
        self.ha2 = SpatialAttention(512)
        self.ca23 = CrossScaleAttention(512, 1024)
        self.ca34 = CrossScaleAttention(1024, 2048)
        self.spec = ModelSpec(
            architecture="hmc_resnet50",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            modality_hint="mammogram",
            num_classes=num_classes,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x4′: the last stage's map after CA34 (B, 2048, 7, 7 at 224²)."""
        net = self.backbone
        x = net.maxpool(net.act1(net.bn1(net.conv1(x))))
        x1 = self.ha1(net.layer1(x))
        x2 = self.ha2(net.layer2(x1))
        x3 = self.ca23(net.layer3(x2), x2)
        return self.ca34(net.layer4(x3), x3)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.backbone.forward_head(features, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.backbone.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.backbone.reset_classifier(num_classes)
        self._set_num_classes(num_classes)

    def cam_target_layers(self) -> list[nn.Module]:
        """CA34's output: the attended last-stage map the classifier pools (as the paper's CAMs)."""
        return [self.ca34]

    def _parameter_group_modules(self) -> list[tuple[str, Sequence[nn.Module]]]:
        net = self.backbone
        return [
            ("stem", [net.conv1, net.bn1]),
            ("layer1", [net.layer1]),
            ("ha1", [self.ha1]),
            ("layer2", [net.layer2]),
            ("ha2", [self.ha2]),
            ("layer3", [net.layer3]),
            ("ca23", [self.ca23]),
            ("layer4", [net.layer4]),
            ("ca34", [self.ca34]),
            ("head", [net.fc]),
        ]


@register_model("hmc_resnet50", backbones=lambda **_: (BACKBONE,))
def hmc_resnet50(num_classes: int, **kwargs: object) -> HmcResNet:
    """Seed 004 (ResNet50 + HA1/HA2 self-attention + CA23/CA34 cross-attention)."""
    return HmcResNet(num_classes, **kwargs)
