"""U-Net for lesion segmentation (seed 001's downstream task): background / ground-glass / consolidation."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be 'batch' or 'instance', got {kind!r}")


class DoubleConv(nn.Sequential):
    """(3x3 conv, norm, ReLU) x 2; bias-free convs since a norm follows."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), _norm(norm, out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), _norm(norm, out_channels), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Classic U-Net: ``(B, in_channels, H, W)`` in [-1, 1] -> logits ``(B, n_classes, H, W)``.

    Level ``k`` has ``width * 2**k`` channels; ``depth`` 2x2 max-pools down and 2x2
    transposed convs up, skips concatenated; ``H`` and ``W`` must be divisible by ``2**depth``.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 3, width: int = 32, depth: int = 4,
                 norm: str = "batch") -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        widths = [width * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0], norm)] +
                                  [DoubleConv(widths[k - 1], widths[k], norm) for k in range(1, depth + 1)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[k + 1], widths[k], 2, stride=2) for k in reversed(range(depth)))
        self.merge = nn.ModuleList(DoubleConv(2 * widths[k], widths[k], norm) for k in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        factor = 2**self.depth
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"U-Net of depth {self.depth} needs a side divisible by {factor}, got {tuple(x.shape[-2:])}")
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], 1))
        return self.head(x)
