"""Data-efficient GAN training switches, written once for every GAN family's step function.

With a few hundred training images the critic memorises the real set and the generator chases
it. The switches here are the cheap fixes (all off by default, so a run with them off draws the
same random numbers, writes the same checkpoints and gives the same outputs as before they existed):

- ``diffaugment``: differentiable augmentation (:func:`lungsynth.transforms.diffaugment.diff_augment`)
  of every batch the critic sees, real and fake, in the critic step and in the generator step;
  with probability ``augment_p``, or, with ``ada_target > 0``, an ADA-style probability steered
  by the critic's outputs on real images (:class:`~lungsynth.transforms.diffaugment.AdaptiveProbability`,
  adjusted every :data:`ADA_ADJUST_EVERY` critic steps, ``p`` moving 0 -> 1 in ``ada_speed_images``
  real images, starting at 0);
- ``ema_decay``: an exponential moving average of the generator weights
  (:class:`~lungsynth.networks.ema.ExponentialMovingAverage`), updated after every generator
  optimiser step and returned as the trained generator, so generation samples the average;
- ``r1_gamma``: the R1 gradient penalty ``gamma / 2 * E ||grad_x D(x)||^2`` on the real batch
  (:func:`~lungsynth.losses.regularisers.r1_penalty`) added to the critic loss every ``r1_every``
  critic steps, scaled by ``r1_every`` (lazy regularisation, StyleGAN2). The gradient is taken
  with respect to the real batch before augmentation (through it, as in StyleGAN2-ADA). R1 is
  the usual zero-centred penalty on real data for the relativistic losses as well (R3GAN pairs
  RpGAN with R1 + R2); on a PACGAN critic the outputs of one pack are differentiated together;
- ``standing_stats``: once training ends, the batch-norm running statistics of the generator that
  is returned (the EMA copy when on) are replaced by their average over ``standing_stats`` forward
  passes of that generator (on a training batch's worth of latents; for the conditional GANs, of
  training maps)
  (:func:`~lungsynth.networks.batch_norm.standing_statistics`, BigGAN's "standing statistics"):
  the statistics the EMA copy inherits belong to the live weights, and those a live generator keeps
  to the last few steps' weights.

TTUR (separate learning rates for G and D) is a family setting: ``lr_g``/``lr_d`` of the LUS
GANs, ``lr``/``lr_d`` of the DCGAN.

Random streams: the standing-statistics latents come from ``loop.stream(STANDING_STREAM, total)``
(id 23). Augmentation parameters of call ``c`` of step ``s`` come from
``loop.stream(AUGMENT_STREAMS["real"], s, c)`` for real batches and
``loop.stream(AUGMENT_STREAMS["fake"], s, c)`` for generated ones (ids 21 and 22, used by no
trainer for anything else: the GAN trainers use 1 for batch order, 2 for noise and targets,
3 for dropout; the classifier 11-12, the feature extractor 31-32). Real and fake batches thus
get independent parameters from one distribution, and a resumed run redraws the same ones.
Off, nothing is drawn.

A family wires it in with a handful of lines (see the DCGAN and LUS trainers)::

    tricks = DataEfficient(settings, loop, generator)          # after generator.to(device)
    loop.resume({...networks and optimisers...} | tricks.state(), run_fingerprint(..., fingerprint_view(settings), ...))
    ...
    real = tricks.r1.watch(real, step)                         # before the critic's real pass
    c_real = D(tricks.augment(real, "real", step))
    c_fake = D(tricks.augment(fake.detach(), "fake", step))
    loss_d = tricks.r1.add(loss_d, c_real, real, step)
    tricks.observe(c_real)                                     # raw logits, positive = real
    ... G step on D(tricks.augment(fake, "fake", step, 1)); after opt_g.step(): tricks.after_generator_step(generator)
    return run_adversarial_training(..., tricks=tricks, latent_batch=batch)

and appends :func:`log_columns` to its loss-log columns and :meth:`DataEfficient.row`
to each row (``augment_p``, the probability used, when augmentation is on; nothing when off).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lungsynth.engine import TrainingLoop
from lungsynth.losses.adversarial import RELATIVISTIC
from lungsynth.losses.regularisers import r1_penalty
from lungsynth.networks.batch_norm import standing_statistics
from lungsynth.networks.ema import ExponentialMovingAverage
from lungsynth.transforms.diffaugment import AdaptiveProbability, diff_augment, parse_policy

AUGMENT_STREAMS = {"real": 21, "fake": 22}
"""Stream ids of the augmentation parameters of real and of generated batches."""

STANDING_STREAM = 23
"""Stream id of the latents that compute the generator's standing batch-norm statistics."""

ADA_ADJUST_EVERY = 4
"""Critic steps between adjustments of the adaptive probability (ADA's 4 minibatches)."""


@dataclass
class DataEfficientSettings:
    """The data-efficient training fields of a GAN family's settings (a mixin; all off by default).

    ``diffaugment``: DiffAugment policy (e.g. ``"translation,cutout,color"``; ``""`` = off);
    ``augment_p``: probability of each op per sample when ``ada_target`` is 0; ``ada_target``:
    ADA's target of ``E[sign(D(real))]`` (0 = fixed ``augment_p``; ADA: 0.6); ``ada_speed_images``:
    real images (critic outputs, for a PACGAN critic: packs) over which ``p`` can move from 0 to 1;
    ``ema_decay``: generator EMA decay per generator step (0 = off; e.g. 0.999); ``ema_warmup``:
    the decay ramp ``min(decay, (1 + n) / (10 + n))``; ``r1_gamma``: R1 weight (0 = off);
    ``r1_every``: critic steps between R1 evaluations (lazy regularisation); ``standing_stats``:
    batches of latents over which the returned generator's batch-norm statistics are averaged
    once training ends (0 = off: the running statistics of training are kept).
    Defaults equal the schema's (``tests/test_settings.py`` ties them).
    """

    diffaugment: str = ""
    augment_p: float = 1.0
    ada_target: float = 0.0
    ada_speed_images: int = 10_000
    ema_decay: float = 0.0
    ema_warmup: bool = True
    r1_gamma: float = 0.0
    r1_every: int = 1
    standing_stats: int = 0


SWITCHES = tuple(f.name for f in dataclasses.fields(DataEfficientSettings))


def fingerprint_view(settings: Any, extra: tuple[str, ...] = ()) -> dict:
    """``settings`` as a dict for :func:`lungsynth.engine.run_fingerprint`, without the fields of
    :class:`DataEfficientSettings` (and ``extra`` fields) that hold their defaults.

    A run with every switch off then has the fingerprint it had before the switches existed, so
    its checkpoints still resume; any switch that is set changes the fingerprint.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    values = dataclasses.asdict(settings)
    return {k: v for k, v in values.items() if not (k in (*SWITCHES, *extra) and v == defaults[k])}


def log_columns(settings: DataEfficientSettings) -> tuple[str, ...]:
    """Extra loss-log columns of a run: ``augment_p`` (the probability used in the step) when
    augmentation is on, none when off; the values come from :meth:`DataEfficient.row`."""
    return ("augment_p",) if parse_policy(settings.diffaugment) else ()


def overfit_logits(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Critic outputs on real images as ADA reads them (positive = "real") for GAN loss ``loss``.

    ``sgan``/``hinge``: the raw outputs; ``lsgan`` (targets 0/1): ``real - 0.5``; the relativistic
    losses, whose outputs have no absolute zero: ``real - mean(fake)``.
    """
    if loss in RELATIVISTIC:
        return real - fake.mean()
    if loss == "lsgan":
        return real - 0.5
    return real


class Augmenter:
    """DiffAugment of the critic's inputs with a fixed or adaptive probability (identity when off)."""

    def __init__(self, settings: DataEfficientSettings, loop: TrainingLoop) -> None:
        self.policy = parse_policy(settings.diffaugment)
        self.loop = loop
        if settings.ada_target > 0 and not self.policy:
            raise ValueError("ada_target > 0 steers the probability of diffaugment, which is off: set a policy "
                             "such as diffaugment: translation,cutout,color")
        if not 0.0 <= settings.augment_p <= 1.0:
            raise ValueError(f"augment_p must be in [0, 1], got {settings.augment_p}")
        self.fixed_p = float(settings.augment_p)
        self.ada = (AdaptiveProbability(settings.ada_target, ADA_ADJUST_EVERY, settings.ada_speed_images)
                    if settings.ada_target > 0 else None)

    @property
    def enabled(self) -> bool:
        return bool(self.policy)

    @property
    def p(self) -> float:
        """The probability the next call uses (0 when augmentation is off)."""
        if not self.policy:
            return 0.0
        return self.ada.p if self.ada is not None else self.fixed_p

    def __call__(self, x: torch.Tensor, which: str, step: int, call: int = 0, **options: Any):
        """``x`` augmented with the parameters of stream ``(AUGMENT_STREAMS[which], step, call)``.

        ``which``: ``"real"`` or ``"fake"``; ``call``: distinguishes several batches of one kind in
        one step. ``options`` go to :func:`diff_augment` (e.g. ``extra=[label_map]``; then the
        result is ``(x, [maps])``). Off: ``x`` itself (with ``extra``: ``(x, list(extra))``), nothing drawn.
        """
        if not self.policy:
            return (x, list(options["extra"])) if options.get("extra") is not None else x
        generator = self.loop.stream(AUGMENT_STREAMS[which], step, call)
        return diff_augment(x, self.policy, generator, self.p, **options)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Feed the critic's outputs on (augmented) real images to ADA (positive = real; no-op without ADA)."""
        if self.ada is not None:
            self.ada.update(real_logits)

    def state_dict(self) -> dict:
        return {} if self.ada is None else {"ada": self.ada.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.ada is not None:
            self.ada.load_state_dict(state["ada"])


class R1:
    """Lazy R1 penalty on the critic's real pass: every ``every`` steps, ``every * gamma / 2 * r1_penalty``."""

    def __init__(self, gamma: float = 0.0, every: int = 1) -> None:
        if gamma < 0 or every < 1:
            raise ValueError(f"need r1_gamma >= 0 and r1_every >= 1, got {gamma} and {every}")
        self.gamma, self.every = float(gamma), int(every)

    def due(self, step: int) -> bool:
        return self.gamma > 0 and step % self.every == 0

    def watch(self, real: torch.Tensor, step: int) -> torch.Tensor:
        """``real`` made a leaf that requires grad when R1 is due at ``step``; else ``real`` itself."""
        return real.detach().requires_grad_(True) if self.due(step) else real

    def add(self, loss_d: torch.Tensor, real_logits: torch.Tensor, real: torch.Tensor, step: int) -> torch.Tensor:
        """``loss_d`` plus the scaled penalty when due (``real``: what :meth:`watch` returned); else ``loss_d`` itself."""
        if not self.due(step):
            return loss_d
        return loss_d + (self.every * self.gamma / 2) * r1_penalty(real_logits, real)


class DataEfficient:
    """The switches of ``settings`` for one run: :attr:`augment`, :attr:`ema` (or ``None``), :attr:`r1`.

    Build it after the generator is on its device (the EMA copy is taken then), and register
    :meth:`state` with :meth:`TrainingLoop.resume` so a resumed run continues bit-exactly.
    """

    def __init__(self, settings: DataEfficientSettings, loop: TrainingLoop, generator: nn.Module) -> None:
        self.augment = Augmenter(settings, loop)
        self.ema = (ExponentialMovingAverage(generator, settings.ema_decay, warmup=settings.ema_warmup)
                    if settings.ema_decay > 0 else None)
        self.r1 = R1(settings.r1_gamma, settings.r1_every)
        if settings.standing_stats < 0:
            raise ValueError(f"standing_stats must be >= 0 (batches; 0 = off), got {settings.standing_stats}")
        self.standing_stats = int(settings.standing_stats)
        self.loop = loop

    def trained_generator(self, generator: nn.Module,
                          run_batch: Callable[[nn.Module, torch.Generator], object]) -> nn.Module:
        """The generator a finished run returns: the EMA copy when on, else ``generator``; with
        ``standing_stats`` its batch-norm statistics first recomputed in place, deterministically:
        ``run_batch(trained, rng)`` runs it on one batch of inputs drawn from ``rng`` (stream
        :data:`STANDING_STREAM`). The result is in eval mode when statistics were recomputed."""
        trained = generator if self.ema is None else self.ema.module
        if self.standing_stats:
            standing_statistics(trained, lambda rng: run_batch(trained, rng), self.standing_stats,
                                self.loop.stream(STANDING_STREAM, self.loop.total))
        return trained

    def state(self) -> dict[str, Any]:
        """What a checkpoint must hold beyond the networks and optimisers (empty when every switch is off)."""
        out: dict[str, Any] = {}
        if self.augment.ada is not None:
            out["augment"] = self.augment
        if self.ema is not None:
            out["ema"] = self.ema
        return out

    def observe(self, real_logits: torch.Tensor) -> None:
        self.augment.observe(real_logits)

    def after_generator_step(self, generator: nn.Module) -> None:
        """Call after every generator optimiser step (updates the EMA when on)."""
        if self.ema is not None:
            self.ema.update(generator)

    def row(self, p: float) -> tuple:
        """The extra loss-log values for :func:`log_columns` (``p``: the probability used in the step)."""
        return (round(p, 6),) if self.augment.enabled else ()


def describe_recipe(settings: Mapping[str, Any], paper: str, model_changes: Mapping[str, Any] | None = None) -> str:
    """One line naming the recipe a model was trained with, for the report.

    ``paper`` (e.g. ``"seed 003"``) when every data-efficient switch of ``settings`` (a validated
    ``<branch>.train`` dict, schema defaults filled in) is off and ``model_changes`` holds nothing
    truthy; otherwise ``paper`` followed by what was added, e.g.
    ``"seed 003 + DiffAugment (translation,cutout; ADA target 0.6) + EMA 0.99 + critic spectral norm"``.
    ``model_changes`` maps a description to whether it applies (e.g. ``{"critic spectral norm": True}``).
    """
    defaults = {f.name: f.default for f in dataclasses.fields(DataEfficientSettings)}
    value = {name: settings.get(name, default) for name, default in defaults.items()}
    added = []
    if parse_policy(value["diffaugment"]):
        how = (f"ADA target {value['ada_target']:g}" if value["ada_target"] > 0 else f"p {value['augment_p']:g}")
        added.append(f"DiffAugment ({value['diffaugment']}; {how})")
    if value["ema_decay"] > 0:
        added.append(f"EMA {value['ema_decay']:g}")
    if value["r1_gamma"] > 0:
        added.append(f"R1 {value['r1_gamma']:g}" + (f" every {value['r1_every']}" if value["r1_every"] > 1 else ""))
    if value["standing_stats"] > 0:
        added.append(f"standing BN statistics ({value['standing_stats']} batches)")
    added += [name for name, on in (model_changes or {}).items() if on]
    return " + ".join([paper, *added])
