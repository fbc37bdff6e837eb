"""GAN losses on raw critic outputs, including the relativistic family (Jolicoeur-Martineau, 2018).

Notation: ``real = C(x_r)``, ``fake = C(x_f)`` are raw critic outputs (logits), 1-D, equal
length for the paired ``rsgan``; ``BCE(x, t) = mean(-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)))``
(``binary_cross_entropy_with_logits``); ``m_r = mean(real)``, ``m_f = mean(fake)``.

Discriminator losses with targets ``t_r`` (``real_target``, default 1) and ``t_f``
(``fake_target``, default 0); with the defaults each reduces exactly to the textbook formula:

- ``sgan``:    BCE(real, t_r) + BCE(fake, t_f)                 G: BCE(fake, 1) (non-saturating)
- ``lsgan``:   0.5 mean((real - t_r)^2) + 0.5 mean((fake - t_f)^2)   G: 0.5 mean((fake - 1)^2)
- ``hinge``:   mean(relu(1 - real)) + mean(relu(1 + fake))     G: -mean(fake)
- ``rsgan``:   (BCE(real - fake, t_r) + BCE(fake - real, t_f)) / 2
               (= BCE(real - fake, 1) for default targets, as BCE(-x, 0) = BCE(x, 1))
                                                               G: BCE(fake - real, 1)
- ``rasgan``:  (BCE(real - m_f, t_r) + BCE(fake - m_r, t_f)) / 2
                                                               G: (BCE(real - m_f, 0) + BCE(fake - m_r, 1)) / 2
- ``ralsgan``: (mean((real - m_f - a_r)^2) + mean((fake - m_r - a_f)^2)) / 2 with a = 2t - 1
               (targets 1/0 -> +1/-1: the paper's ``(real - m_f - 1)^2`` and ``(fake - m_r + 1)^2``)
                                                               G: (mean((real - m_f + 1)^2) + mean((fake - m_r - 1)^2)) / 2
- ``rahinge``: (mean(relu(1 - (real - m_f))) + mean(relu(1 + (fake - m_r)))) / 2
                                                               G: (mean(relu(1 + (real - m_f))) + mean(relu(1 - (fake - m_r)))) / 2

Targets may be floats or tensors broadcastable to the logits (one per critic output):
two-sided label smoothing draws ``t_r`` in [0.7, 1.2] and ``t_f`` in [0, 0.3]; label
flipping swaps ``t_r[i]`` and ``t_f[i]`` for a share of the outputs (see
:func:`smoothed_targets`). In the relativistic losses ``t_r[i]`` applies to the term of real
output ``i`` and ``t_f[i]`` to the term of fake output ``i``. ``hinge`` and ``rahinge`` have
no labels and ignore the targets. The mean terms ``m_r``, ``m_f`` are not detached: the
critic is trained through both (as in the reference implementation); the generator loss
only receives gradient through ``fake``. Generator losses use hard targets.
Note that a BCE target above 1 (smoothing up to 1.2) has no finite minimiser: the critic is
rewarded linearly for larger logits on those samples (gradient ``sigmoid(x) - t``), as in the
seed's recipe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("sgan", "lsgan", "hinge", "rsgan", "rasgan", "ralsgan", "rahinge")
RELATIVISTIC = frozenset({"rsgan", "rasgan", "ralsgan", "rahinge"})
"""The losses of :data:`LOSSES` that compare real with fake outputs (no absolute zero of the critic)."""

Target = float | torch.Tensor


def _check(name: str) -> None:
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of {', '.join(LOSSES)}")


def _bce(logits: torch.Tensor, target: Target) -> torch.Tensor:
    target_t = torch.as_tensor(target, dtype=logits.dtype, device=logits.device).expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, target_t)


def discriminator_loss(
    name: str,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    real_target: Target = 1.0,
    fake_target: Target = 0.0,
) -> torch.Tensor:
    """Critic loss (scalar) of loss ``name`` from raw outputs ``real`` ``(N,)`` and ``fake`` ``(M,)``."""
    _check(name)
    if name == "sgan":
        return _bce(real, real_target) + _bce(fake, fake_target)
    if name == "lsgan":
        return 0.5 * (real - real_target).pow(2).mean() + 0.5 * (fake - fake_target).pow(2).mean()
    if name == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if name == "rsgan":
        return (_bce(real - fake, real_target) + _bce(fake - real, fake_target)) / 2
    rel_real = real - fake.mean()
    rel_fake = fake - real.mean()
    if name == "rasgan":
        return (_bce(rel_real, real_target) + _bce(rel_fake, fake_target)) / 2
    if name == "ralsgan":
        a_r = 2 * torch.as_tensor(real_target, dtype=real.dtype, device=real.device) - 1
        a_f = 2 * torch.as_tensor(fake_target, dtype=real.dtype, device=real.device) - 1
        return ((rel_real - a_r).pow(2).mean() + (rel_fake - a_f).pow(2).mean()) / 2
    # rahinge
    return (F.relu(1 - rel_real).mean() + F.relu(1 + rel_fake).mean()) / 2


def generator_loss(name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss (scalar) of loss ``name``; ``real`` is used by the relativistic losses only."""
    _check(name)
    if name == "sgan":
        return _bce(fake, 1.0)
    if name == "lsgan":
        return 0.5 * (fake - 1).pow(2).mean()
    if name == "hinge":
        return -fake.mean()
    if name == "rsgan":
        return _bce(fake - real, 1.0)
    rel_real = real - fake.mean()
    rel_fake = fake - real.mean()
    if name == "rasgan":
        return (_bce(rel_real, 0.0) + _bce(rel_fake, 1.0)) / 2
    if name == "ralsgan":
        return ((rel_real + 1).pow(2).mean() + (rel_fake - 1).pow(2).mean()) / 2
    return (F.relu(1 + rel_real).mean() + F.relu(1 - rel_fake).mean()) / 2


def smoothed_targets(
    n: int,
    generator: torch.Generator,
    *,
    smoothing: bool = True,
    flip_prob: float = 0.0,
    real_range: tuple[float, float] = (0.7, 1.2),
    fake_range: tuple[float, float] = (0.0, 0.3),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output critic targets ``(real_target, fake_target)``, each float32 ``(n,)`` on the CPU.

    With ``smoothing`` they are uniform in ``real_range`` / ``fake_range`` (else 1 / 0); then
    each pair ``i`` is swapped with probability ``flip_prob`` ("instance noise" by label flips).
    Always draws the same amount of randomness from ``generator`` (reproducible streams).
    """
    u_real = torch.rand(n, generator=generator)
    u_fake = torch.rand(n, generator=generator)
    flip = torch.rand(n, generator=generator) < flip_prob
    if smoothing:
        t_real = real_range[0] + (real_range[1] - real_range[0]) * u_real
        t_fake = fake_range[0] + (fake_range[1] - fake_range[0]) * u_fake
    else:
        t_real, t_fake = torch.ones(n), torch.zeros(n)
    return torch.where(flip, t_fake, t_real), torch.where(flip, t_real, t_fake)
