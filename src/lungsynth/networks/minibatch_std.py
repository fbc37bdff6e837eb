"""Minibatch standard deviation (Karras et al. 2018, ProGAN): a critic feature that sees a collapsed batch.

A critic that judges each sample alone cannot tell a generator that draws one good image for
every latent from one that draws many: mode collapse costs the generator nothing. Appending the
average standard deviation of the features across a group of samples as one more feature map
gives the critic that signal: a collapsed group has near-zero spread, the real group does not.
"""

from __future__ import annotations

import torch
from torch import nn


class MinibatchStdDev(nn.Module):
    """``(B, C, H, W)`` -> ``(B, C + 1, H, W)``: the input plus one map of its spread within a group.

    The batch is split into groups of ``min(group_size, B)`` consecutive samples (when ``B`` is not
    a multiple, the last group is the smaller remainder; a group of one gets 0). Per group, the standard
    deviation over the group of every feature (``sqrt(var + 1e-8)``, biased variance) is averaged
    over channels and positions into one number, broadcast as the extra channel of the group's samples.

    Args:
        group_size: samples per group (ProGAN: 4); 1 disables the statistic (the channel is 0).
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        group = min(self.group_size, batch)
        stats = []
        for start in range(0, batch, group):
            part = x[start : start + group].float()
            spread = (part.var(dim=0, unbiased=False) + 1e-8).sqrt().mean() if len(part) > 1 else part.new_zeros(())
            stats.append(spread.expand(len(part)))
        channel = torch.cat(stats).to(x.dtype).view(batch, 1, 1, 1).expand(batch, 1, height, width)
        return torch.cat([x, channel], dim=1)
