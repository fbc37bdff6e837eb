"""Sampling trained generators: image files, one tensor file and a sample grid."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .io_utils import atomic_path, torch_save
from .training import encode_uint8, load_generator, seeded_generator


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
    device: str = "cpu",
    loader=load_generator,
) -> torch.Tensor:
    """Sample ``n_images`` from a trained generator and write PNGs, a tensor file and a grid.

    ``image_dir`` is filled in a temporary sibling folder and renamed into place,
    so it is either complete or absent. ``loader(path, device)`` rebuilds the generator
    (the DCGAN's by default).
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
