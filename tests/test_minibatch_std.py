"""Minibatch standard deviation (lungsynth.networks.minibatch_std) and the PACGAN critic option."""

import pytest
import torch

from lungsynth.networks.lus_gan import PackedDiscriminator
from lungsynth.networks.minibatch_std import MinibatchStdDev


def test_the_extra_channel_is_the_group_spread_and_zero_for_identical_samples():
    x = torch.randn(8, 3, 4, 4)
    x[4:] = x[4]  # the second group of 4 is collapsed
    out = MinibatchStdDev(4)(x)
    assert out.shape == (8, 4, 4, 4) and torch.equal(out[:, :3], x)
    want = x[:4].var(0, unbiased=False).add(1e-8).sqrt().mean()
    torch.testing.assert_close(out[:4, 3], want.expand(4, 4, 4))
    assert out[4:, 3].max() < 1e-3


def test_the_channel_depends_only_on_the_own_group_and_gradients_flow():
    x = torch.randn(8, 2, 3, 3, requires_grad=True)
    out = MinibatchStdDev(4)(x)
    y = x.detach().clone()
    y[4:] *= 10
    assert torch.equal(MinibatchStdDev(4)(y)[:4], out[:4].detach())
    out[:, -1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_group_size_must_be_positive():
    with pytest.raises(ValueError, match="group_size"):
        MinibatchStdDev(0)


def test_critic_with_minibatch_std_scores_packs():
    critic = PackedDiscriminator(in_channels=1, image_size=16, widths=(4, 8), pack=2, spectral_norm=True,
                                 minibatch_std=2)
    assert critic(torch.randn(8, 1, 16, 16)).shape == (4,)
    assert any(isinstance(m, MinibatchStdDev) for m in critic.modules())
