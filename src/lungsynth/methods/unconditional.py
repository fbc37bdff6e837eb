"""What the per-class unconditional families (DCGAN, LUS GANs) share: one class's training job, sampling.

A family supplies its trainer, settings class and generator loader; this module turns a trained
generator into image files, one tensor file and a sample grid.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lungsynth.artifacts import atomic_path, torch_save, write_csv
from lungsynth.data.preprocess import class_images, encode_uint8, load_split
from lungsynth.engine import LoopResult, LoopSettings, Step, TrainingLoop, seeded_generator
from lungsynth.methods.data_efficient import DataEfficient

log = logging.getLogger(__name__)


def adversarial_step(keys: tuple, values: tuple[float, float, float, float], extra: tuple = ()) -> Step:
    """One GAN step's log row and checks: ``keys`` (step[, epoch]), then ``values`` = (loss_d, loss_g,
    mean critic output on real, on fake) rounded to 6 decimals, then ``extra`` columns."""
    return Step(row=(*keys, *(round(v, 6) for v in values), *extra),
                losses={"loss_d": values[0], "loss_g": values[1]},
                postfix={"loss_d": f"{values[0]:.3f}", "loss_g": f"{values[1]:.3f}"})


def run_adversarial_training(loop: TrainingLoop, step_fn, generator: torch.nn.Module, discriminator: torch.nn.Module,
                             *, model_config: dict, channels: int, image_size: int, tricks: DataEfficient,
                             latent_batch: int, **extra) -> dict:
    """Run ``loop`` (both networks in train mode) and return what the class's job saves.

    The result holds the weights of ``tricks.trained_generator`` (the EMA copy when on: what the
    generate job samples; with standing statistics computed on batches of ``latent_batch``
    latents when on), ``model_config``,
    ``channels``, ``image_size``, the step count, ``resumed_from``, ``loss_csv``, the device and
    ``extra``; a run stopped by ``stop_after`` returns only ``stopped_at`` and ``resumed_from``.
    """
    generator.train()
    discriminator.train()
    ended: LoopResult = loop.run(step_fn)
    if ended.stopped:
        return {"stopped_at": ended.step, "resumed_from": ended.resumed_from}
    trained = tricks.trained_generator(generator, latent_forward(latent_batch, loop.device))
    weights = trained.state_dict()
    return {"generator": weights, "model_config": dict(model_config), "channels": channels,
            "image_size": image_size, "step": loop.total, "steps": loop.total, **extra,
            "resumed_from": ended.resumed_from, "loss_csv": ended.loss_csv, "device": str(loop.device)}


def latent_forward(latent_batch: int, device: torch.device | str = "cpu"):
    """``run_batch(net, rng)`` for standing statistics: ``net`` on ``latent_batch`` latents drawn from ``rng``."""
    return lambda net, rng: net(torch.randn(latent_batch, net.latent_dim, generator=rng).to(device))


@torch.no_grad()
def sample_generator(generator: torch.nn.Module, n: int, *, seed: int, batch_size: int = 64) -> torch.Tensor:
    """Draw ``n`` images as uint8 ``(n, C, S, S)``; the same seed gives the same images.

    Latents come from a CPU generator seeded with ``seed`` and are drawn in one
    block, so the result does not depend on ``batch_size`` or the device.
    """
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.latent_dim, generator=seeded_generator(seed))
    chunks = [encode_uint8(generator(z[i : i + batch_size].to(device))) for i in range(0, n, batch_size)]
    return torch.cat(chunks)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 ``(C, H, W)`` -> PIL image (L or RGB)."""
    array = image.numpy()
    return Image.fromarray(array[0]) if array.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))


def image_grid(images: torch.Tensor, n: int | None = None, pad: int = 2) -> Image.Image:
    """Tile up to ``n`` uint8 ``(N, C, H, W)`` images into a near-square grid (white gaps)."""
    images = images[: n or len(images)]
    count, channels, h, w = images.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    canvas = np.full((channels, rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=np.uint8)
    for i, image in enumerate(images.numpy()):
        r, c = divmod(i, cols)
        canvas[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return to_pil(torch.from_numpy(canvas))


def save_png(image: Image.Image, path: str | Path) -> None:
    """Save a PIL image atomically as PNG."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def generate_images(
    checkpoint: str | Path,
    *,
    n_images: int,
    seed: int,
    tensor_path: str | Path,
    image_dir: str | Path,
    grid_path: str | Path,
    grid: int = 36,
    loader,
    device: str = "cpu",
) -> torch.Tensor:
    """Sample ``n_images`` from a trained generator and write PNGs, a tensor file and a grid.

    ``image_dir`` is filled in a temporary sibling folder and renamed into place,
    so it is either complete or absent. ``loader(path, device)`` rebuilds the generator
    (the family's ``load_generator``).
    """
    generator = loader(checkpoint, device)
    images = sample_generator(generator, n_images, seed=seed)
    image_dir = Path(image_dir)
    staging = image_dir.with_name(f".{image_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for i, image in enumerate(images):
            to_pil(image).save(staging / f"{i:05d}.png")
        shutil.rmtree(image_dir, ignore_errors=True)
        staging.rename(image_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    torch_save(tensor_path, {"images": images, "seed": seed})
    save_png(image_grid(images, grid), grid_path)
    return images


def train_class_generator_job(
    trainer: Callable[..., dict],
    settings_cls: type[LoopSettings],
    train_split: str | Path,
    label: str,
    *,
    model_config: dict,
    settings: dict,
    work_dir: str | Path,
    generator_out: str | Path,
    losses_out: str | Path,
    progress: bool = True,
) -> dict:
    """Train one class's generator: class ``label``'s images of ``train_split`` in, generator and loss CSV out.

    ``trainer(images, model_config, settings_cls.from_dict(settings), work_dir, progress=...)`` is the
    family's training function; it resumes from ``work_dir`` checkpoints when present. Writes
    ``generator_out`` (weights, ``model_config``, ``channels``, ``image_size``, ``step``, ``label``)
    and ``losses_out`` (the loss log); returns the trainer's result.
    """
    images = class_images(load_split(train_split), label)
    result = trainer(images, model_config, settings_cls.from_dict(settings), work_dir, progress=progress)
    log.info("class %s: %d images, %d steps%s", label, len(images), result["steps"],
             f", resumed from step {result['resumed_from']}" if result["resumed_from"] is not None else "")
    torch_save(generator_out, {k: result[k] for k in ("generator", "model_config", "channels", "image_size", "step")}
               | {"label": label})
    write_csv(losses_out, pd.read_csv(result["loss_csv"]))
    return result
