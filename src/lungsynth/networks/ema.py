"""Exponential moving average (EMA) of a network's weights, the copy used for generation.

Averaging the generator's weights over training steps smooths out the oscillation of GAN
training; the averaged copy usually gives better samples than the last weights (Karras et al.
2018, Yazici et al. 2019).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class ExponentialMovingAverage:
    """An averaged copy :attr:`module` of ``model``: ``avg <- d * avg + (1 - d) * weight`` per :meth:`update`.

    Args:
        model: the trained network. The averaged copy is a deep copy taken now (so build this after
            moving ``model`` to its device and dtype), kept in eval mode with ``requires_grad`` off.
        decay: ``d`` in ``[0, 1)`` per update (e.g. 0.999: an average over about ``1 / (1 - d)`` updates).
        warmup: use the effective decay ``min(decay, (1 + n) / (10 + n))``, ``n`` the number of
            updates made before this one (0.1 at the first update, 0.5 at the ninth, ...), so the
            average forgets the random initial weights quickly early in training.

    Floating-point parameters are averaged; buffers (batch-norm statistics, counters) are copied
    from ``model`` at each update. :meth:`state_dict` holds the averaged weights and the update
    count, so a checkpointed and resumed run continues bit-exactly.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    def _pairs(self, model: nn.Module, what: str):
        mine = dict(getattr(self.module, f"named_{what}")())
        theirs = dict(getattr(model, f"named_{what}")())
        if mine.keys() != theirs.keys():
            raise ValueError(f"model {what} {sorted(theirs)} do not match the averaged copy's {sorted(mine)}")
        return [(mine[name], theirs[name]) for name in mine]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimiser step)."""
        weight = 1.0 - self.current_decay()
        for avg, param in self._pairs(model, "parameters"):
            if avg.is_floating_point():
                avg.lerp_(param.detach(), weight)
            else:
                avg.copy_(param.detach())
        for avg, buf in self._pairs(model, "buffers"):
            avg.copy_(buf)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters and buffers with the averaged ones."""
        for avg, param in self._pairs(model, "parameters"):
            param.copy_(avg)
        for avg, buf in self._pairs(model, "buffers"):
            buf.copy_(avg)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
