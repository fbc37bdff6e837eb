"""Gradient regularisers of the critic."""

from __future__ import annotations

import torch


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 penalty (Mescheder et al. 2018): ``mean_i ||grad_x D(x_i)||^2`` over the real batch.

    Args:
        real_logits: raw critic outputs on the real batch, ``(B,)`` or ``(B, ...)`` (a patch critic's
            outputs of one image are summed, so the gradient is that of the image's total output).
        real_images: ``(B, ...)`` the tensor the critic was run on, which must require grad: the caller
            sets ``real = real.detach().requires_grad_(True)`` before the forward pass. It may be the
            batch before a differentiable augmentation (the gradient then flows through it, as in
            StyleGAN2-ADA) or the augmented batch.
    Returns:
        A scalar with a graph (``create_graph=True``), so ``backward`` reaches the critic's
        parameters. The caller multiplies it by ``gamma / 2`` and adds it to the critic loss
        (with lazy regularisation every ``k`` steps, by ``k * gamma / 2``). The squared norm is
        accumulated in at least float32 (a half-precision gradient is upcast).
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs the gradient with respect to the real images: call "
                         "real.requires_grad_(True) before running the critic on them")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    grad = grad.to(torch.promote_types(grad.dtype, torch.float32))  # fp16/bf16 -> fp32, fp64 stays
    return grad.pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()
