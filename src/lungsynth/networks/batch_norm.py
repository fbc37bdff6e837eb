"""Standing batch-norm statistics for a generator that samples in eval mode.

A batch-normalised generator samples in eval mode with the running mean and variance its
batch-norm layers kept during training: an exponential average (momentum 0.1) of the last few
batches' statistics, taken under weights that changed at every step. When the sampled weights are
not the trained ones (the EMA copy of :mod:`lungsynth.networks.ema`, whose buffers are copied from
the live network), the statistics belong to other weights, and the layers shift and scale every
feature map wrongly: washed-out or blotchy images. BigGAN (Brock et al. 2019) samples with
"standing statistics" instead: the plain average of the batch statistics over many batches drawn
from the final weights. :func:`standing_statistics` computes them in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``module`` that track running statistics."""
    return [m for m in module.modules() if isinstance(m, _NORMS) and m.track_running_stats]


@torch.no_grad()
def standing_statistics(generator: nn.Module, run_batch: Callable[[torch.Generator], object],
                        n_batches: int, rng: torch.Generator) -> int:
    """Replace the running statistics of ``generator``'s batch-norm layers by their average over ``n_batches``.

    Args:
        generator: the network to recalibrate (in place); left in eval mode.
        run_batch: ``run_batch(rng)`` runs ``generator`` forward on one batch of inputs drawn from
            ``rng`` (e.g. ``lambda rng: generator(torch.randn(64, 100, generator=rng))``); its result
            is discarded.
        n_batches: batches to average over (>= 1).
        rng: the CPU generator the inputs are drawn from (a seeded one makes the result deterministic).
    Returns:
        the number of batch-norm layers recalibrated (0: nothing changed, no batch drawn).

    Each layer's running mean and variance become the cumulative average of the batch mean and
    (unbiased) batch variance over the ``n_batches`` forward passes (``momentum=None``); dropout is
    kept off during the passes, and each layer's momentum is restored afterwards.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    layers = batch_norm_layers(generator)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    generator.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    try:
        for _ in range(n_batches):
            run_batch(rng)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        generator.eval()
    return len(layers)
