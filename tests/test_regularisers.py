"""R1 penalty: exact value on a linear critic, patch outputs, and gradients reaching the critic."""

from __future__ import annotations

import pytest
import torch

from lungsynth.losses.regularisers import r1_penalty
from lungsynth.transforms.diffaugment import diff_augment


def linear_critic_weight() -> torch.Tensor:
    return torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def real_batch(batch: int = 5) -> torch.Tensor:
    x = torch.rand(batch, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    return x.requires_grad_(True)


def test_linear_critic_penalty_is_the_squared_weight_norm():
    w = linear_critic_weight().requires_grad_(True)
    x = real_batch()
    logits = (w * x).sum(dim=(1, 2, 3))  # D(x) = <w, x>: grad_x D = w for every sample
    penalty = r1_penalty(logits, x)
    assert penalty.dim() == 0
    assert penalty.item() == pytest.approx(w.detach().pow(2).sum().item(), rel=1e-12)
    penalty.backward()  # create_graph: d/dw ||w||^2 = 2 w
    torch.testing.assert_close(w.grad, 2 * w.detach())


def test_patch_outputs_are_summed_per_image():
    w = linear_critic_weight()
    x = real_batch()
    logits = (w * x).sum(dim=1)  # (B, 3, 3) patch outputs summing to <w, x>
    assert r1_penalty(logits, x).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-12)


def test_penalty_reaches_a_conv_critic_and_flows_through_diffaugment():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Softplus(), torch.nn.Conv2d(4, 1, 8))
    real = torch.rand(3, 1, 8, 8).mul(2).sub(1).requires_grad_(True)
    augmented = diff_augment(real, "translation,cutout,color", torch.Generator().manual_seed(2), 1.0)
    logits = critic(augmented).flatten()
    penalty = r1_penalty(logits, real)
    assert torch.isfinite(penalty) and penalty.item() > 0
    penalty.backward()
    for p in (critic[0].weight, critic[0].bias, critic[2].weight):  # not the output bias: grad_x D ignores it
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_needs_images_that_require_grad():
    x = real_batch().detach()
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(x.sum(dim=(1, 2, 3)), x)
