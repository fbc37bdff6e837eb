"""Batched, seed-controlled image augmentation on tensors (no image decoding).

One affine ``grid_sample`` per batch implements random resized crop and
horizontal flip for every sample at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop_flip(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.85, 1.0),
    hflip: bool = True,
) -> torch.Tensor:
    """Randomly crop (area share in ``scale``, square aspect), resize back and flip.

    Args:
        images: ``(B, C, H, W)`` float tensor, any range (values are interpolated).
        generator: CPU ``torch.Generator`` supplying all randomness (reproducible).
        scale: ``(min, max)`` share of the image area kept by the crop; ``(1, 1)`` disables.
        hflip: flip each sample left-right with probability 0.5.
    Returns:
        Tensor of the same shape and dtype.
    """
    batch = images.shape[0]
    low, high = scale
    area = torch.empty(batch).uniform_(low, high, generator=generator)
    side = area.sqrt()  # crop side as a share of the image side
    # crop centre offset so the crop stays inside the image ([-1, 1] coordinates)
    max_shift = 1.0 - side
    shift_x = (torch.rand(batch, generator=generator) * 2 - 1) * max_shift
    shift_y = (torch.rand(batch, generator=generator) * 2 - 1) * max_shift
    flip = torch.ones(batch)
    if hflip:
        flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = side * flip
    theta[:, 0, 2] = shift_x
    theta[:, 1, 1] = side
    theta[:, 1, 2] = shift_y
    if math.isclose(low, 1.0) and math.isclose(high, 1.0) and not hflip:
        return images
    theta = theta.to(device=images.device, dtype=torch.float32)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(images.dtype)
