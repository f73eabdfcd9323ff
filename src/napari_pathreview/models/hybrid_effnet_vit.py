"""Seed 001: EfficientNetV2-S and ViT-B/16 side by side, fused by the paper's exact MLP blocks.

Features: EfficientNetV2-S's final map, average pooled (1280-d), concatenated with ViT-B/16's
[CLS] token after the encoder's final norm (768-d) → 2048-d. Then, exactly as the paper gives:
fusion  LayerNorm → Linear(2048, 1024) → GELU → LayerNorm(1024) → Dropout(0.6) → Linear(1024, 1024);
head    LayerNorm(1024) → Linear(1024, 512) → GELU → Dropout(0.7) → Linear(512, C).
CAMs are taken on both branches (the CNN's last map and the ViT's last block, tokens reshaped to
the 14×14 patch grid) and averaged by pytorch-grad-cam.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from napari_pathreview.models._registry import register_model
from napari_pathreview.models.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    PathReviewModel,
    TokenReshape,
)
from napari_pathreview.models.pretrained import create_timm
from napari_pathreview.models.timm_classifier import timm_cam_layer, timm_stage_groups

CNN_NAME = "tf_efficientnetv2_s"
VIT_NAME = "vit_base_patch16_224"
FUSION_WIDTH = 1024
HEAD_WIDTH = 512


def fusion_block(in_features: int, drop: float) -> nn.Sequential:
    """LayerNorm → Linear(in, 1024) → GELU → LayerNorm(1024) → Dropout → Linear(1024, 1024)."""
    return nn.Sequential(
        nn.LayerNorm(in_features),
        nn.Linear(in_features, FUSION_WIDTH),
        nn.GELU(),
        nn.LayerNorm(FUSION_WIDTH),
        nn.Dropout(drop),
        nn.Linear(FUSION_WIDTH, FUSION_WIDTH),
    )


class HybridHead(nn.Module):
    """LayerNorm(1024) → Linear(1024, 512) → GELU → Dropout → Linear(512, C)."""

    def __init__(self, num_classes: int, drop: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(FUSION_WIDTH)
        self.fc1 = nn.Linear(FUSION_WIDTH, HEAD_WIDTH)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(self.norm(x))))
        return x if pre_logits else self.fc(x)


class HybridEffNetViT(PathReviewModel):
    """Seed 001's hybrid CNN–transformer classifier.

    Args:
        num_classes: Width of the logits.
        pretrained: ImageNet weights for both backbones.
        pretrained_path: A folder holding ``tf_efficientnetv2_s.safetensors`` and
            ``vit_base_patch16_224.safetensors`` (one file cannot hold both backbones).
        fusion_drop: Dropout in the fusion block (0.6 in the paper).
        head_drop: Dropout in the head (0.7 in the paper).
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        fusion_drop: float = 0.6,
        head_drop: float = 0.7,
    ) -> None:
        super().__init__()
        weights = {"pretrained": pretrained, "pretrained_path": pretrained_path}
        self.cnn = create_timm(CNN_NAME, num_classes=0, **weights)
        self.vit = create_timm(VIT_NAME, num_classes=0, **weights)
        in_features = self.cnn.num_features + self.vit.num_features  # 1280 + 768
        self.fusion = fusion_block(in_features, fusion_drop)
        self.head = HybridHead(num_classes, head_drop)
        self._reshape = TokenReshape(self.vit.num_prefix_tokens, self.vit.patch_embed.grid_size)
        self.spec = ModelSpec(
            architecture="hybrid_effnetv2s_vitb16",
            mean=IMAGENET_MEAN,  # the paper normalises with ImageNet statistics
            std=IMAGENET_STD,
            num_classes=num_classes,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated 2048-d descriptor: pooled CNN map ‖ ViT [CLS]."""
        cnn = self.cnn.forward_head(self.cnn.forward_features(x), pre_logits=True)
        vit = self.vit.forward_head(self.vit.forward_features(x), pre_logits=True)
        return torch.cat([cnn, vit], dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(self.fusion(features), pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.head.fc = nn.Linear(HEAD_WIDTH, num_classes)
        self._set_num_classes(num_classes)

    def cam_target_layers(self) -> list[nn.Module]:
        """The CNN's last map and the ViT's last block norm (tokens → grid by the transform)."""
        return [self.cnn.bn2, timm_cam_layer(self.vit)]

    @property
    def cam_reshape_transform(self) -> TokenReshape:
        return self._reshape

    def _parameter_group_modules(self) -> list[tuple[str, Sequence[nn.Module | nn.Parameter]]]:
        """Both backbones' stages interleaved by relative depth, then fusion, then head.

        Unfreezing the last k backbone groups thus reaches the late stages of both branches,
        as the paper's phase 2 does (last EfficientNet stages and last ViT blocks together).
        """
        cnn = [(f"cnn.{n}", p) for n, p in timm_stage_groups(self.cnn)]
        vit = [(f"vit.{n}", p) for n, p in timm_stage_groups(self.vit)]
        ranked = [((i + 1) / len(cnn), 0, g) for i, g in enumerate(cnn)]
        ranked += [((i + 1) / len(vit), 1, g) for i, g in enumerate(vit)]
        stages = [group for _, _, group in sorted(ranked, key=lambda r: (r[0], r[1]))]
        return [*stages, ("fusion", [self.fusion]), ("head", [self.head])]


@register_model("hybrid_effnetv2s_vitb16", backbones=lambda **_: (CNN_NAME, VIT_NAME))
def hybrid_effnetv2s_vitb16(num_classes: int, **kwargs: object) -> HybridEffNetViT:
    """Seed 001 (EfficientNetV2-S ‖ ViT-B/16 → fusion → head)."""
    return HybridEffNetViT(num_classes, **kwargs)
