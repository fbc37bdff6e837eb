"""GAN training with step-level checkpoints, exact resume and per-step loss logs.

Randomness is derived from ``(seed, epoch)`` for batch order and ``(seed, step)``
for noise and augmentation, so a run resumed from any checkpoint continues
exactly as the uninterrupted run would have (same batches, same noise).
Checkpoints are written atomically; a killed job loses at most the steps since
the last checkpoint.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import random_resized_crop_flip
from .io_utils import atomic_path, torch_load, torch_save
from .models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from .runlog import progress_bar

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "epoch", "loss_d", "loss_g", "d_real", "d_fake")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; set device: auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (stable across runs and platforms)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def decode_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 tensor in 0..255 -> float32 in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def encode_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float tensor in [-1, 1] -> uint8 in 0..255 (rounded, clipped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def mixed_precision(enabled: bool, device: torch.device) -> tuple[bool, torch.dtype, torch.amp.GradScaler]:
    """``(use_amp, dtype, scaler)``: autocast only on CUDA; bf16 where supported (no scaling), else fp16 with a scaler."""
    use_amp = enabled and device.type == "cuda"
    dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    return use_amp, dtype, torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)


class SettingsFromDict:
    """Mixin for settings dataclasses: ``from_dict`` keeps the keys that are fields, ignoring the rest."""

    @classmethod
    def from_dict(cls, values: dict):
        from dataclasses import fields

        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def run_fingerprint(*parts) -> str:
    """A hex digest identifying a training run: settings, data and architecture.

    ``parts`` may nest dicts, lists/tuples, dataclasses, tensors, arrays, ``nn.Module`` (its parameter
    and buffer names and shapes, not values) and scalars. Keys named ``checkpoint_every``, ``device``
    and ``amp`` are left out, since they do not change what a CPU run computes.
    """
    import dataclasses
    import hashlib

    import numpy as np

    digest = hashlib.blake2b(digest_size=16)
    ignored = {"checkpoint_every", "device", "amp"}

    def feed(value) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, torch.nn.Module):
            value = {name: tuple(t.shape) for name, t in value.state_dict().items()}
        if isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=str):
                if str(key) in ignored:
                    continue
                digest.update(repr(key).encode())
                feed(value[key])
            digest.update(b"}")
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for item in value:
                feed(item)
            digest.update(b"]")
        elif isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, np.ndarray):
            feed(torch.from_numpy(np.ascontiguousarray(value)))
        else:
            digest.update(repr(value).encode())

    for part in parts:
        feed(part)
    return digest.hexdigest()


class CheckpointStore:
    """Atomic step checkpoints ``ckpt_<step>.pt`` in a folder, keeping the newest ``keep``.

    With a ``fingerprint`` (see :func:`run_fingerprint`) every checkpoint records it, and
    :meth:`latest` discards checkpoints written under another one (changed settings, data or
    architecture), so a rerun after a config change starts afresh instead of resuming stale state.
    """

    pattern = re.compile(r"^ckpt_(\d{9})\.pt$")

    def __init__(self, folder: str | Path, keep: int = 2, fingerprint: str | None = None) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.fingerprint = fingerprint

    def steps(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        found = (self.pattern.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, step: int, state: dict) -> Path:
        path = self.folder / f"ckpt_{step:09d}.pt"
        if self.fingerprint is not None:
            state = {**state, "fingerprint": self.fingerprint}
        torch_save(path, state)
        for old in self.steps()[: -self.keep]:
            (self.folder / f"ckpt_{old:09d}.pt").unlink(missing_ok=True)
        return path

    def discard(self) -> None:
        """Delete every checkpoint in the folder."""
        for step in self.steps():
            (self.folder / f"ckpt_{step:09d}.pt").unlink(missing_ok=True)

    def latest(self) -> dict | None:
        """Load the newest readable checkpoint of this fingerprint (an unreadable one is skipped with a warning)."""
        for step in reversed(self.steps()):
            path = self.folder / f"ckpt_{step:09d}.pt"
            try:
                state = torch_load(path)
            except Exception as exc:  # a corrupt file from a crash outside our atomic writes
                log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
                continue
            if self.fingerprint is not None and state.get("fingerprint") != self.fingerprint:
                log.warning("checkpoints in %s were written for other settings, data or code; discarding them "
                            "and training from step 0", self.folder)
                self.discard()
                return None
            return state
        return None


class LossLog:
    """Per-step CSV of losses that survives kills: rows past a resumed step are dropped."""

    def __init__(self, path: str | Path, columns: tuple[str, ...] = LOSS_COLUMNS) -> None:
        self.path = Path(path)
        self.columns = columns

    def restart_at(self, step: int) -> None:
        """Keep only rows with ``step < step`` (those the checkpoint covers)."""
        rows: list[list[str]] = []
        if self.path.exists():
            with open(self.path, newline="") as handle:
                reader = csv.reader(handle)
                next(reader, None)
                for row in reader:
                    if len(row) == len(self.columns):
                        try:
                            if int(row[0]) < step:
                                rows.append(row)
                        except ValueError:
                            continue
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(rows)

    def append(self, rows: list[tuple]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerows(rows)


@dataclass
class DCGANSettings:
    """Training settings of one DCGAN (one class). See the config schema for meanings."""

    epochs: int = 100
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    checkpoint_every: int = 100
    seed: int = 0
    hflip: bool = True
    crop_scale: tuple[float, float] = (0.85, 1.0)
    amp: bool = True
    device: str = "auto"


def build_dcgan(model_config: dict, channels: int, image_size: int) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """Generator and discriminator from ``dcgan.model`` settings, DCGAN-initialised."""
    generator = DCGANGenerator(
        latent_dim=model_config["latent_dim"],
        out_channels=channels,
        image_size=image_size,
        widths=model_config["generator_widths"],
    )
    discriminator = DCGANDiscriminator(
        in_channels=channels, image_size=image_size, widths=model_config["discriminator_widths"]
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
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Train one DCGAN on ``images`` with BCE (non-saturating G loss) and Adam.

    Args:
        images: uint8 ``(N, C, S, S)`` training images of one class.
        model_config: ``dcgan.model`` settings (latent_dim, widths).
        settings: training settings.
        work_dir: folder for ``checkpoints/`` and the live ``losses.csv``; an existing
            checkpoint there is resumed from.
        stop_after: stop (as if killed) after this many steps in this call (tests).
        on_step: callback after each step (tests).
    Returns:
        dict with ``generator`` state_dict, ``model_config``, ``step``, ``steps``,
        ``resumed_from`` (step or None) and ``loss_csv`` path.
    """
    work_dir = Path(work_dir)
    n, channels, size, _ = images.shape
    if n == 0:
        raise ValueError("no training images for this class")
    device = select_device(settings.device)
    batch = min(settings.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total_steps = settings.epochs * steps_per_epoch

    torch.manual_seed(settings.seed)
    generator, discriminator = build_dcgan(model_config, channels, size)
    generator.to(device)
    discriminator.to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(settings.beta1, settings.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=(settings.beta1, settings.beta2))

    store = CheckpointStore(work_dir / "checkpoints",
                            fingerprint=run_fingerprint(images, model_config, settings, generator, discriminator))
    losses = LossLog(work_dir / "losses.csv")
    start = 0
    resumed_from = None
    state = store.latest()
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = resumed_from = int(state["step"])
        log.info("resuming from checkpoint at step %d of %d", start, total_steps)
    losses.restart_at(start)

    use_amp, amp_dtype, scaler = mixed_precision(settings.amp, device)
    latent = model_config["latent_dim"]
    pending: list[tuple] = []
    perm_epoch, perm = -1, None

    def checkpoint(step: int) -> None:
        losses.append(pending)
        pending.clear()
        store.save(
            step,
            {
                "step": step,
                "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
            },
        )

    bar = progress_bar(range(start, total_steps), initial=start, total=total_steps, desc="dcgan", unit="step",
                       disable=not progress)
    generator.train()
    discriminator.train()
    step = start
    for step in bar:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(n, generator=seeded_generator(settings.seed, 1, epoch))
            perm_epoch = epoch
        rng = seeded_generator(settings.seed, 2, step)
        real = decode_uint8(images[perm[index * batch : (index + 1) * batch]])
        real = random_resized_crop_flip(real, rng, scale=tuple(settings.crop_scale), hflip=settings.hflip).to(device)
        z = torch.randn(real.shape[0], latent, generator=rng).to(device)
        ones = torch.ones(real.shape[0], device=device)
        zeros = torch.zeros(real.shape[0], device=device)

        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            fake = generator(z)
            logit_real = discriminator(real)
            logit_fake = discriminator(fake.detach())
            loss_d = F.binary_cross_entropy_with_logits(logit_real.float(), ones) + F.binary_cross_entropy_with_logits(
                logit_fake.float(), zeros
            )
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)

        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logit_gen = discriminator(fake)
            loss_g = F.binary_cross_entropy_with_logits(logit_gen.float(), ones)
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        scaler.update()

        values = (loss_d.item(), loss_g.item(), torch.sigmoid(logit_real).mean().item(), torch.sigmoid(logit_fake).mean().item())
        if not all(math.isfinite(v) for v in values[:2]):
            raise FloatingPointError(f"non-finite loss at step {step}: loss_d={values[0]}, loss_g={values[1]}")
        pending.append((step, epoch, *(round(v, 6) for v in values)))
        bar.set_postfix(loss_d=f"{values[0]:.3f}", loss_g=f"{values[1]:.3f}", refresh=False)
        done = step + 1
        if done % settings.checkpoint_every == 0 or done == total_steps:
            checkpoint(done)
        if on_step is not None:
            on_step(done)
        if stop_after is not None and done - start >= stop_after:
            bar.close()
            return {"stopped_at": done, "resumed_from": resumed_from}
    bar.close()
    if start == total_steps and pending:
        checkpoint(total_steps)
    return {
        "generator": generator.state_dict(),
        "model_config": dict(model_config),
        "channels": channels,
        "image_size": size,
        "step": total_steps,
        "steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "resumed_from": resumed_from,
        "loss_csv": str(losses.path),
        "device": str(device),
    }


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
