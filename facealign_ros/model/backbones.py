"""Backbone factory and the small CNN of the ``lite`` configuration.

Every backbone maps ``(B, C_in, H, W) -> (B, feature_dim, H/4, W/4)``.

The lite CNN keeps HRNet's idea of a stride-4 output fed by lower-resolution context, with
depthwise-separable residual blocks (MobileNet style) to stay cheap on a CPU: a two-conv stem to
stride 4, one block there, then stride-8 and stride-16 levels whose outputs are projected with 1x1
convs, upsampled and summed into the stride-4 map.
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

from facealign_ros.model.config import CMFAConfig
from facealign_ros.model.hrnet import BN_MOMENTUM, HRNet, conv_bn


class DSBlock(nn.Module):
    """Depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN, residual when shapes allow, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
        y = self.body(x)
        return F.relu(y + x if self.residual else y)


class LiteBackbone(nn.Module):
    """Small multi-resolution CNN: ``(B, in_channels, H, W) -> (B, out_dim, H/4, W/4)``.

    Args:
        in_channels: Input channels.
        out_dim: Output channels.
        width: Base width w; levels use w, 2w (stride 4), 4w (stride 8), 8w (stride 16).
    """

    def __init__(self, in_channels: int, out_dim: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(in_channels, w, 3, 2), conv_bn(w, 2 * w, 3, 2))
        self.level4 = DSBlock(2 * w, 2 * w)
        self.level8 = nn.Sequential(DSBlock(2 * w, 4 * w, 2), DSBlock(4 * w, 4 * w))
        self.level16 = nn.Sequential(DSBlock(4 * w, 8 * w, 2), DSBlock(8 * w, 8 * w))
        # conv + BN laterals (rather than BN after the sum) so that every BN can be folded.
        self.lateral4 = conv_bn(2 * w, out_dim, 1, relu=False)
        self.lateral8 = conv_bn(4 * w, out_dim, 1, relu=False)
        self.lateral16 = conv_bn(8 * w, out_dim, 1, relu=False)
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(out_dim, out_dim, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, out_dim, H/4, W/4)."""
        x4 = self.level4(self.stem(x))
        x8 = self.level8(x4)
        x16 = self.level16(x8)
        size = x4.shape[-2:]
        y = self.lateral4(x4)
        y = y + F.interpolate(self.lateral8(x8), size=size, mode="bilinear", align_corners=False)
        y = y + F.interpolate(self.lateral16(x16), size=size, mode="bilinear", align_corners=False)
        return self.head(y)


def build_backbone(config: CMFAConfig, in_channels: int) -> nn.Module:
    """Backbone named by ``config.backbone`` with ``config.feature_dim`` output channels.

    Args:
        config: Network configuration.
        in_channels: Input channels of this branch (RGB or event representation).

    Returns:
        A module mapping ``(B, in_channels, H, W) -> (B, feature_dim, H/4, W/4)``.
    """
    if config.backbone == "hrnet_w18":
        return HRNet(in_channels, config.feature_dim, width=config.backbone_width)
    if config.backbone == "lite":
        return LiteBackbone(in_channels, config.feature_dim, width=config.backbone_width)
    raise ValueError(f"unknown backbone {config.backbone!r}")
