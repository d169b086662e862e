"""HRNet-W18 feature extractor (own implementation of the HRNet design).

Structure as in HRNet (Sun et al.) and its variant in iulab-hongik/CMFA-SSMER
``CMFA/backbone/HRnet.py``:

- stem: two stride-2 3x3 convolutions (64 channels), then four bottleneck blocks (256 channels);
- stages 2-4 with 2, 3 and 4 parallel branches at strides 4, 8, 16 and 32 (widths w, 2w, 4w, 8w;
  w=18), each made of high-resolution modules: four basic blocks per branch, then a fusion that
  sums every branch into every other (1x1 conv + bilinear upsampling from lower resolutions,
  chains of stride-2 3x3 convs from higher ones);
- head: all branches upsampled to stride 4 and concatenated (15w = 270 channels), then 1x1 conv,
  BN, ReLU, 1x1 conv to ``out_dim``: ``(B, C_in, H, W) -> (B, out_dim, H/4, W/4)``.

As in the CMFA configuration each of stages 2-4 has one module (HRNet-W18 for pose/classification
uses 1, 4 and 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import Tensor, nn

BN_MOMENTUM = 0.1  # PyTorch default: running statistics settle within tens of steps


def conv_bn(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, relu: bool = True
) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> optional ReLU, 'same' padding for odd kernels."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with an identity (or 1x1 projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(c_in, c_out, 3, stride), conv_bn(c_out, c_out, 3, 1, relu=False)
        )
        self.shortcut: nn.Module = (
            conv_bn(c_in, c_out, 1, stride, relu=False)
            if (stride != 1 or c_in != c_out)
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
        return F.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) with a shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.body = nn.Sequential(
            conv_bn(c_in, planes, 1),
            conv_bn(planes, planes, 3),
            conv_bn(planes, c_out, 1, relu=False),
        )
        self.shortcut: nn.Module = (
            conv_bn(c_in, c_out, 1, relu=False) if c_in != c_out else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, 4 * planes, H, W)."""
        return F.relu(self.body(x) + self.shortcut(x))


class HRModule(nn.Module):
    """Parallel branches of basic blocks followed by all-to-all multi-resolution fusion."""

    def __init__(self, widths: list[int], num_blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w, w) for _ in range(num_blocks)]) for w in widths
        )
        n = len(widths)
        fuse: list[nn.ModuleList] = []
        for i in range(n):
            row: list[nn.Module] = []
            for j in range(n):
                if j > i:  # lower resolution: 1x1 to width i, upsampled in forward
                    row.append(conv_bn(widths[j], widths[i], 1, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:  # higher resolution: (i - j) stride-2 3x3 convs
                    steps: list[nn.Module] = [
                        conv_bn(widths[j], widths[j], 3, 2) for _ in range(i - j - 1)
                    ]
                    steps.append(conv_bn(widths[j], widths[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse = nn.ModuleList(fuse)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        """Branch i: (B, w_i, H/2^i, W/2^i) in and out."""
        ys = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out: list[Tensor] = []
        for i, row in enumerate(self.fuse):
            acc = ys[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(ys[j])
                if j > i:
                    size = ys[i].shape[-2:]
                    z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
                acc = acc + z
            out.append(F.relu(acc))
        return out


class HRNet(nn.Module):
    """HRNet feature extractor: ``(B, in_channels, H, W) -> (B, out_dim, H/4, W/4)``.

    Args:
        in_channels: Input channels (3 for RGB, the representation's channels for events).
        out_dim: Output channels of the head.
        width: Base width w (18 for HRNet-W18).
        num_blocks: Basic blocks per branch in each module.
        num_modules: Modules in stages 2, 3 and 4.
    """

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        width: int = 18,
        num_blocks: int = 4,
        num_modules: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_channels, 64, 3, 2), conv_bn(64, 64, 3, 2))
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *[Bottleneck(256, 64) for _ in range(3)])
        widths = [width * 2**i for i in range(4)]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev = [256]
        for n_branch, n_mod in zip((2, 3, 4), num_modules, strict=True):
            cur = widths[:n_branch]
            self.transitions.append(self._transition(prev, cur))
            self.stages.append(nn.Sequential(*[HRModule(cur, num_blocks) for _ in range(n_mod)]))
            prev = cur
        total = sum(widths)
        self.head = nn.Sequential(
            nn.Conv2d(total, total, 1),
            nn.BatchNorm2d(total, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(total, out_dim, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _transition(prev: list[int], cur: list[int]) -> nn.ModuleList:
        """Adapt existing branches' widths; derive a new branch from the lowest resolution."""
        layers: list[nn.Module] = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(nn.Identity() if prev[i] == c else conv_bn(prev[i], c, 3, 1))
            else:
                layers.append(conv_bn(prev[-1], c, 3, 2))
        return nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, out_dim, H/4, W/4)."""
        xs = [self.layer1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            inputs = [t(xs[i]) if i < len(xs) else t(xs[-1]) for i, t in enumerate(transition)]
            xs = stage(inputs)
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [
            F.interpolate(y, size=size, mode="bilinear", align_corners=False) for y in xs[1:]
        ]
        return self.head(torch.cat(ups, dim=1))
