"""Seed 002: SSResNeXt — ResNeXt-50 (3, 4, 6, 3) built from Small-SE-ResNeXt blocks.

Each block has 32 branches (a grouped convolution, cardinality 32, width 4 per branch); every
branch's 3×3 convolution is joined by a 1×3 and a 3×1 convolution on the same input, summed
before BatchNorm (the paper's eq. 4: W3×3·X + (W1×3 + W3×1)·X, the ACNet "asymmetric" trick that
strengthens the kernel's skeleton and folds into the 3×3 at inference). Squeeze-and-excitation
re-weights the channels before the residual addition, and in each stage the first block's output
is added to the input of the last block (the paper's dense first↔last link; an addition, so it
costs no parameters). The network is timm's ResNet with this block, so it keeps timm's stem,
feature_info, forward_intermediates and layer grouping; ImageNet weights come from timm's
``seresnext50_32x4d`` (the asymmetric convolutions, which that model lacks, start at zero so the
pretrained function is kept at the start of fine-tuning).
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from napari_pathreview.models._registry import register_model
from napari_pathreview.models.pretrained import load_state_checked, pretrained_state
from napari_pathreview.models.timm_classifier import TimmModelWrapper

PRETRAINED_SOURCE = "seresnext50_32x4d"
ASYMMETRIC_KEYS: tuple[str, ...] = ("conv2_h.", "conv2_v.")


class SmallSEResNeXtBlock(Bottleneck):
    """timm's SE-ResNeXt bottleneck with asymmetric 1×3 + 3×1 convs beside the grouped 3×3."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, *args: object, **kwargs: object
    ) -> None:
        super().__init__(inplanes, planes, stride, *args, **kwargs)
        conv = self.conv2
        width, groups = conv.in_channels, conv.groups
        self.conv2_h = nn.Conv2d(
            width, width, (1, 3), stride=stride, padding=(0, 1), groups=groups, bias=False
        )
        self.conv2_v = nn.Conv2d(
            width, width, (3, 1), stride=stride, padding=(1, 0), groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.conv2(x) + self.conv2_h(x) + self.conv2_v(x)
        x = self.aa(self.act2(self.drop_block(self.bn2(x))))
        x = self.se(self.bn3(self.conv3(x)))
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act3(x + shortcut)


class DenseLinkStage(nn.Sequential):
    """A stage whose last block also receives the first block's output (first↔last link)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self[0](x)
        x = first
        for block in list(self)[1:-1]:
            x = block(x)
        return self[-1](x + first) if len(self) > 1 else x


def build_ssresnext(num_classes: int, layers: tuple[int, ...] = (3, 4, 6, 3), **kwargs: object):
    """The bare timm ResNet carrying Small-SE-ResNeXt blocks and dense-link stages."""
    import timm

    model = ResNet(
        block=SmallSEResNeXtBlock,
        layers=layers,
        cardinality=32,
        base_width=4,
        num_classes=num_classes,
        block_args={"attn_layer": "se"},
        **kwargs,
    )
    for name in ("layer1", "layer2", "layer3", "layer4"):
        setattr(model, name, DenseLinkStage(*getattr(model, name)))
    # Borrow the source model's data config (input size, mean/std) for spec and timm helpers.
    model.pretrained_cfg = dict(timm.models.get_pretrained_cfg(PRETRAINED_SOURCE).to_dict())
    return model


class SSResNeXt(TimmModelWrapper):
    """Seed 002's SSResNeXt50 with the PathReviewModel contract (timm ResNet underneath).

    Args:
        num_classes: Width of the logits.
        pretrained: Start from ``seresnext50_32x4d`` ImageNet weights.
        pretrained_path: Local safetensors (file or folder) for those weights.
        **kwargs: timm ResNet options (``drop_rate``, ``drop_path_rate``).
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: bool = False,
        pretrained_path: str | Path | None = None,
        **kwargs: object,
    ) -> None:
        model = build_ssresnext(num_classes, **kwargs)
        if pretrained or pretrained_path is not None:
            state, source = pretrained_state(PRETRAINED_SOURCE, pretrained_path)
            _zero_asymmetric(model)
            load_state_checked(model, state, source, "fc", allow_missing=ASYMMETRIC_KEYS)
        super().__init__(model, "ssresnext50", "histology")


def _zero_asymmetric(model: nn.Module) -> None:
    """Zero the 1×3/3×1 kernels so a pretrained SE-ResNeXt's function is kept at the start."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(key in name for key in ASYMMETRIC_KEYS):
                param.zero_()


@register_model("ssresnext50", backbones=lambda **_: (PRETRAINED_SOURCE,))
def ssresnext50(num_classes: int, **kwargs: object) -> SSResNeXt:
    """Seed 002 (SSResNeXt50: 32 branches, asymmetric convs, SE, dense first↔last links)."""
    return SSResNeXt(num_classes, **kwargs)
