"""DCGAN training (seed 000) on the shared resumable loop of :mod:`lungsynth.engine`.

Randomness is derived from ``(seed, epoch)`` for batch order and ``(seed, step)``
for noise and augmentation, so a run resumed from any checkpoint continues
exactly as the uninterrupted run would have (same batches, same noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lungsynth.transforms.augment import random_resized_crop_flip
from lungsynth.artifacts import torch_load
from lungsynth.data.preprocess import decode_uint8
from lungsynth.engine import LoopSettings, epoch_batches, Step, TrainingLoop, run_fingerprint
from lungsynth.methods.data_efficient import (DataEfficient, DataEfficientSettings, fingerprint_view,
                                             log_columns)
from lungsynth.methods.unconditional import adversarial_step, run_adversarial_training
from lungsynth.networks.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "epoch", "loss_d", "loss_g", "d_real", "d_fake")


@dataclass
class DCGANSettings(DataEfficientSettings, LoopSettings):
    """Training settings of one DCGAN (one class). See the config schema for meanings.

    ``lr_d``: the discriminator's learning rate (TTUR); ``None`` = ``lr``. The data-efficient
    switches (:class:`~lungsynth.methods.data_efficient.DataEfficientSettings`) are off by default.
    """

    epochs: int = 100
    lr: float = 2e-4
    lr_d: float | None = None
    beta1: float = 0.5
    beta2: float = 0.999
    hflip: bool = True
    crop_scale: tuple[float, float] = (0.85, 1.0)


def build_dcgan(model_config: dict, channels: int, image_size: int) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """Generator and discriminator from ``dcgan.model`` settings, DCGAN-initialised."""
    generator = DCGANGenerator(
        latent_dim=model_config["latent_dim"],
        out_channels=channels,
        image_size=image_size,
        widths=model_config["generator_widths"],
    )
    discriminator = DCGANDiscriminator(
        in_channels=channels, image_size=image_size, widths=model_config["discriminator_widths"],
        spectral_norm=bool(model_config.get("spectral_norm", False)),
    )
    dcgan_init_(generator)
    dcgan_init_(discriminator)
    return generator, discriminator


def train_dcgan(
    images: torch.Tensor,
    model_config: dict,
    settings: DCGANSettings,
    work_dir: str | Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train one DCGAN on ``images`` with BCE (non-saturating G loss) and Adam.

    With the data-efficient switches of ``settings`` (:mod:`lungsynth.methods.data_efficient`;
    all off by default) the discriminator sees DiffAugmented real and fake batches (the G step a
    fresh augmentation of the fake batch), ADA watches its real logits, R1 joins its loss, and the
    generator's EMA is what the result's ``generator`` holds.

    Args:
        images: uint8 ``(N, C, S, S)`` training images of one class.
        model_config: ``dcgan.model`` settings (latent_dim, widths).
        settings: training settings.
        work_dir: folder for ``checkpoints/`` and the live ``losses.csv``; an existing
            checkpoint there is resumed from.
        stop_after: stop (as if killed) after this many steps in this call (tests).
    Returns:
        dict with ``generator`` state_dict, ``model_config``, ``step``, ``steps``,
        ``resumed_from`` (step or None) and ``loss_csv`` path.
    """
    n, channels, size, _ = images.shape
    batch, steps_per_epoch = epoch_batches(n, settings.batch_size, "images for this class")
    loop = TrainingLoop.from_settings(work_dir, settings, total=settings.epochs * steps_per_epoch,
                                      loss_columns=LOSS_COLUMNS + log_columns(settings), desc="dcgan",
                                      progress=progress, stop_after=stop_after)
    device, precision = loop.device, loop.precision

    loop.seed_torch()
    generator, discriminator = build_dcgan(model_config, channels, size)
    generator.to(device)
    discriminator.to(device)
    tricks = DataEfficient(settings, loop, generator)
    lr_d = settings.lr if settings.lr_d is None else settings.lr_d
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(settings.beta1, settings.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=(settings.beta1, settings.beta2))
    loop.resume({"generator": generator, "discriminator": discriminator, "opt_g": opt_g, "opt_d": opt_d}
                | tricks.state(),
                run_fingerprint(images, model_config, fingerprint_view(settings, ("lr_d",)), generator, discriminator))

    latent = model_config["latent_dim"]
    order = loop.epoch_order(n, batch, steps_per_epoch)

    def step_fn(step: int) -> Step:
        epoch, rows = order(step)
        rng = loop.stream(2, step)
        real = decode_uint8(images[rows])
        real = random_resized_crop_flip(real, rng, scale=tuple(settings.crop_scale), hflip=settings.hflip).to(device)
        z = torch.randn(real.shape[0], latent, generator=rng).to(device)
        ones = torch.ones(real.shape[0], device=device)
        zeros = torch.zeros(real.shape[0], device=device)
        p, real = tricks.augment.p, tricks.r1.watch(real, step)

        with precision.autocast():
            fake = generator(z)
            logit_real = discriminator(tricks.augment(real, "real", step))
            logit_fake = discriminator(tricks.augment(fake.detach(), "fake", step))
            loss_d = F.binary_cross_entropy_with_logits(logit_real.float(), ones) + F.binary_cross_entropy_with_logits(
                logit_fake.float(), zeros
            )
        loss_d = tricks.r1.add(loss_d, logit_real, real, step)
        tricks.observe(logit_real)
        opt_d.zero_grad(set_to_none=True)
        precision.backward(loss_d)
        precision.step(opt_d)

        with precision.autocast():
            logit_gen = discriminator(tricks.augment(fake, "fake", step, 1))
            loss_g = F.binary_cross_entropy_with_logits(logit_gen.float(), ones)
        opt_g.zero_grad(set_to_none=True)
        precision.backward(loss_g)
        precision.step(opt_g)
        precision.update()
        tricks.after_generator_step(generator)

        values = (loss_d.item(), loss_g.item(), torch.sigmoid(logit_real).mean().item(), torch.sigmoid(logit_fake).mean().item())
        return adversarial_step((step, epoch), values, tricks.row(p))

    return run_adversarial_training(loop, step_fn, generator, discriminator, model_config=model_config,
                                    channels=channels, image_size=size, tricks=tricks, latent_batch=settings.batch_size,
                                    steps_per_epoch=steps_per_epoch)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> DCGANGenerator:
    """Rebuild a trained generator from a ``generator.pt`` written by the train stage."""
    state = torch_load(path)
    generator = DCGANGenerator(
        latent_dim=state["model_config"]["latent_dim"],
        out_channels=state["channels"],
        image_size=state["image_size"],
        widths=state["model_config"]["generator_widths"],
    )
    generator.load_state_dict(state["generator"])
    return generator.to(device).eval()
