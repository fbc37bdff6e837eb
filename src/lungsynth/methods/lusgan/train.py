"""Seed 003's lung-ultrasound GAN training (relativistic losses, PACGAN critic), exactly resumable.

One iteration = one critic step on a real and a fake batch (smoothed / flipped targets),
then ``g_steps_per_d`` generator steps, each on a fresh real batch (the relativistic losses
need real logits) and fresh noise; then the critic's ``ExponentialLR`` scheduler steps
once. Batches are read in the order of ``(seed, epoch)`` permutations with a running
batch counter (``1 + g_steps_per_d`` batches per iteration), noise and targets come from
a ``(seed, step)`` generator and the global RNG (dropout) is reseeded from ``(seed, step)``
each iteration, so a run resumed from a checkpoint continues exactly. Checkpoints hold
both networks, both optimizers and the scheduler.

Seed 003's "decay 0.0005" is read as ``gamma = 1 - 0.0005`` per iteration: the critic's lr
after k iterations is ``lr_d * 0.9995**k`` (9.21e-5 after 1550; the paper's 4.5946e-5 would
need about 2941 iterations, so its example does not match its own formula).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lungsynth.artifacts import torch_load
from lungsynth.losses.adversarial import LOSSES, discriminator_loss, generator_loss, smoothed_targets
from lungsynth.networks.dcgan import dcgan_init_
from lungsynth.networks.lus_gan import ImprovedLUSGenerator, LUSGenerator, PackedDiscriminator
from lungsynth.engine import LoopSettings, Step, TrainingLoop, run_fingerprint
from lungsynth.methods.data_efficient import (DataEfficient, DataEfficientSettings, fingerprint_view, log_columns,
                                             overfit_logits)
from lungsynth.methods.unconditional import adversarial_step, run_adversarial_training
from lungsynth.data.preprocess import decode_uint8

log = logging.getLogger(__name__)

LUS_LOSS_COLUMNS = ("step", "loss_d", "loss_g", "d_real", "d_fake", "lr_d")
GENERATORS = {"baseline": LUSGenerator, "improved": ImprovedLUSGenerator}


@dataclass
class LUSSettings(DataEfficientSettings, LoopSettings):
    """Training settings of one LUS GAN (one class); defaults equal the schema's ``lusgan.train``.

    ``d_lr_decay``: critic lr multiplied by ``1 - d_lr_decay`` after every iteration.
    ``flip_prob``: share of critic outputs whose real/fake targets are swapped in the D step.
    ``amp``: mixed precision on CUDA (ignored on CPU). Seed 003's run is ``config/paper/lus_rasgan.yaml``.
    The data-efficient switches (:class:`~lungsynth.methods.data_efficient.DataEfficientSettings`)
    are off by default; TTUR is ``lr_g`` / ``lr_d``.
    """

    iterations: int = 200
    lr_g: float = 4e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    d_lr_decay: float = 0.0005
    g_steps_per_d: int = 3
    loss: str = "rasgan"
    label_smoothing: bool = True
    flip_prob: float = 0.05
    seed: int = 999


def build_lus_generator(model_config: dict, channels: int, image_size: int) -> nn.Module:
    """Generator from a model config (``generator``: baseline | improved, latent_dim, generator_widths, dropout)."""
    kind = model_config.get("generator", "baseline")
    if kind not in GENERATORS:
        raise ValueError(f"model_config generator must be one of {', '.join(GENERATORS)}, got {kind!r}")
    return GENERATORS[kind](
        latent_dim=int(model_config["latent_dim"]),
        out_channels=channels,
        image_size=image_size,
        widths=model_config["generator_widths"],
        dropout=float(model_config.get("dropout", 0.0)),
    )


def build_lus_gan(model_config: dict, channels: int, image_size: int) -> tuple[nn.Module, PackedDiscriminator]:
    """Initialised generator and PACGAN critic (``discriminator_widths``, ``pack``, ``spectral_norm``)."""
    generator = build_lus_generator(model_config, channels, image_size)
    discriminator = PackedDiscriminator(
        in_channels=channels,
        image_size=image_size,
        widths=model_config["discriminator_widths"],
        pack=int(model_config.get("pack", 2)),
        spectral_norm=bool(model_config.get("spectral_norm", False)),
        minibatch_std=int(model_config.get("minibatch_std", 0)),
    )
    dcgan_init_(generator)
    dcgan_init_(discriminator)
    return generator, discriminator


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def train_lus_gan(
    images: torch.Tensor,
    model_config: dict,
    settings: LUSSettings,
    work_dir: str | Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train one LUS GAN on ``images``; resumes from a checkpoint in ``work_dir``.

    With the data-efficient switches of ``settings`` (:mod:`lungsynth.methods.data_efficient`;
    all off by default) every critic input (real and fake, critic and generator steps) is
    DiffAugmented, ADA watches the critic's real outputs (see ``overfit_logits``; one per pack), R1 on the
    real batch joins the critic loss, and the generator's EMA (updated after each generator
    step) is what the result's ``generator`` holds.

    Args:
        images: uint8 ``(N, C, S, S)`` training images of one class (S = 4 * 2**k).
        model_config: generator (baseline | improved), latent_dim, generator_widths,
            discriminator_widths, pack, dropout, spectral_norm.
        settings: training settings.
        work_dir: folder for ``checkpoints/`` and the live ``losses.csv`` (columns
            ``step, loss_d, loss_g, d_real, d_fake, lr_d``: critic and mean generator loss,
            mean raw critic output on the real / fake batch of the D step, critic lr used).
        stop_after: stop (as if killed) after this many iterations in this call (tests).
    Returns:
        dict with ``generator`` state_dict, ``model_config``, ``channels``, ``image_size``,
        ``step``, ``steps``, ``batch_size`` (after trimming to a multiple of ``pack``),
        ``resumed_from`` (step or None), ``loss_csv`` and ``device``; after ``stop_after``
        only ``stopped_at`` and ``resumed_from``.
    """
    if settings.loss not in LOSSES:
        raise ValueError(f"unknown GAN loss {settings.loss!r}; choose one of {', '.join(LOSSES)}")
    if settings.g_steps_per_d < 1:
        raise ValueError(f"g_steps_per_d must be >= 1, got {settings.g_steps_per_d}")
    n, channels, size, _ = images.shape
    pack = int(model_config.get("pack", 2))
    batch = min(settings.batch_size, n) // pack * pack
    if batch == 0:
        raise ValueError(f"need at least pack={pack} images for one batch, got {n} (batch_size {settings.batch_size})")
    batches_per_epoch = n // batch
    batches_per_iteration = 1 + settings.g_steps_per_d
    total = settings.iterations
    loop = TrainingLoop.from_settings(work_dir, settings, total=total, loss_columns=LUS_LOSS_COLUMNS
                                      + log_columns(settings), desc="lus-gan", unit="iteration", progress=progress,
                                      stop_after=stop_after)
    device, precision = loop.device, loop.precision

    loop.seed_torch()
    generator, discriminator = build_lus_gan(model_config, channels, size)
    generator.to(device)
    discriminator.to(device)
    tricks = DataEfficient(settings, loop, generator)
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr_g, betas=(settings.beta1, settings.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr_d, betas=(settings.beta1, settings.beta2))
    sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=1.0 - settings.d_lr_decay)
    loop.resume({"generator": generator, "discriminator": discriminator, "opt_g": opt_g, "opt_d": opt_d,
                 "sched_d": sched_d} | tricks.state(),
                run_fingerprint(images, model_config, fingerprint_view(settings), generator, discriminator))

    latent = int(model_config["latent_dim"])
    order = loop.epoch_order(n, batch, batches_per_epoch)

    def real_batch(counter: int) -> torch.Tensor:
        return decode_uint8(images[order(counter)[1]]).to(device)

    def step_fn(step: int) -> Step:
        torch.manual_seed(loop.stream(3, step).initial_seed())  # dropout streams
        rng = loop.stream(2, step)
        counter = step * batches_per_iteration
        lr_d = opt_d.param_groups[0]["lr"]
        p = tricks.augment.p

        # critic step
        real = tricks.r1.watch(real_batch(counter), step)
        z = torch.randn(batch, latent, generator=rng).to(device)
        t_real, t_fake = smoothed_targets(
            batch // pack, rng, smoothing=settings.label_smoothing, flip_prob=settings.flip_prob
        )
        with torch.no_grad(), precision.autocast():
            fake = generator(z)
        with precision.autocast():
            c_real = discriminator(tricks.augment(real, "real", step)).float()
            c_fake = discriminator(tricks.augment(fake, "fake", step)).float()
        loss_d = discriminator_loss(
            settings.loss, c_real, c_fake, real_target=t_real.to(device), fake_target=t_fake.to(device)
        )
        loss_d = tricks.r1.add(loss_d, c_real, real, step)
        tricks.observe(overfit_logits(settings.loss, c_real, c_fake))
        opt_d.zero_grad(set_to_none=True)
        precision.backward(loss_d)
        precision.step(opt_d)
        precision.update()

        # generator steps, each on a fresh real batch and fresh noise
        discriminator.requires_grad_(False)
        g_losses: list[float] = []
        for j in range(settings.g_steps_per_d):
            real_g = real_batch(counter + 1 + j)
            z = torch.randn(batch, latent, generator=rng).to(device)
            with precision.autocast():
                with torch.no_grad():
                    c_real_g = discriminator(tricks.augment(real_g, "real", step, 1 + j)).float()
                c_fake_g = discriminator(tricks.augment(generator(z), "fake", step, 1 + j)).float()
            loss_g = generator_loss(settings.loss, c_real_g, c_fake_g)
            opt_g.zero_grad(set_to_none=True)
            precision.backward(loss_g)
            precision.step(opt_g)
            precision.update()  # once per optimiser step: a scaler steps each optimiser once per update
            tricks.after_generator_step(generator)
            g_losses.append(loss_g.item())
        discriminator.requires_grad_(True)
        sched_d.step()

        values = (loss_d.item(), _mean(g_losses), c_real.mean().item(), c_fake.mean().item())
        return adversarial_step((step,), values, (lr_d, *tricks.row(p)))

    return run_adversarial_training(loop, step_fn, generator, discriminator, model_config=model_config,
                                    channels=channels, image_size=size, tricks=tricks, latent_batch=batch, batch_size=batch)


def load_lus_generator(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained LUS generator (eval mode) from a saved ``{"generator", "model_config",
    "channels", "image_size"}`` dict; sample with :func:`lungsynth.methods.unconditional.sample_generator`
    (which rescales tanh [-1, 1] to uint8 0..255 via :func:`lungsynth.data.preprocess.encode_uint8`)."""
    state = torch_load(path)
    generator = build_lus_generator(state["model_config"], state["channels"], state["image_size"])
    generator.load_state_dict(state["generator"])
    return generator.to(device).eval()
