"""ExponentialMovingAverage: closed form on a one-weight model, warmup, buffers, copy_to, checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from lungsynth.networks.ema import ExponentialMovingAverage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class OneWeight(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([value], dtype=torch.float64))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 1, 1))


def test_constant_target_closed_form():
    model = OneWeight(2.0)
    ema = ExponentialMovingAverage(model, decay=0.9)
    with torch.no_grad():
        model.w.fill_(-1.0)
    for _ in range(7):
        ema.update(model)
    # avg_k = d^k * w0 + (1 - d^k) * w
    expected = 0.9**7 * 2.0 + (1 - 0.9**7) * -1.0
    assert ema.module.w.item() == pytest.approx(expected, rel=1e-12)
    assert ema.updates == 7
    assert model.w.item() == -1.0  # the model is untouched


def test_changing_weights_follow_the_recursion():
    model = OneWeight(0.5)
    ema = ExponentialMovingAverage(model, decay=0.75)
    avg = 0.5
    for value in (1.0, -3.0, 4.0, 0.25):
        with torch.no_grad():
            model.w.fill_(value)
        ema.update(model)
        avg = 0.75 * avg + 0.25 * value
        assert ema.module.w.item() == pytest.approx(avg, rel=1e-12)


def test_warmup_decay():
    model = OneWeight(0.0)
    ema = ExponentialMovingAverage(model, decay=0.99, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.w.fill_(10.0)
    ema.update(model)
    assert ema.module.w.item() == pytest.approx(0.1 * 0.0 + 0.9 * 10.0)
    for _ in range(8):
        ema.update(model)
    assert ema.current_decay() == pytest.approx(10 / 19)  # n = 9
    ema.updates = 10_000
    assert ema.current_decay() == 0.99  # capped by decay
    assert ExponentialMovingAverage(model, decay=0.99).current_decay() == 0.99


def test_averaged_copy_is_frozen_independent_and_buffers_are_copied():
    model = small_net()
    ema = ExponentialMovingAverage(model, decay=0.5)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    model(torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(1)))  # moves the BN statistics
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    bn_model, bn_ema = model[1], ema.module[1]
    assert not torch.equal(bn_ema.running_mean, bn_model.running_mean)
    ema.update(model)
    assert torch.equal(bn_ema.running_mean, bn_model.running_mean)
    assert torch.equal(bn_ema.running_var, bn_model.running_var)
    assert bn_ema.num_batches_tracked.item() == bn_model.num_batches_tracked.item() == 1
    for (_, avg), (_, p) in zip(ema.module.named_parameters(), model.named_parameters()):
        torch.testing.assert_close(avg, p - 0.5)  # halfway from the old weights (p - 1) to p


def test_copy_to_loads_the_average():
    model = small_net()
    ema = ExponentialMovingAverage(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    ema.update(model)
    target = small_net()
    ema.copy_to(target)
    for a, b in zip(target.state_dict().values(), ema.module.state_dict().values()):
        assert torch.equal(a, b)


def test_mismatched_model_is_rejected():
    ema = ExponentialMovingAverage(small_net())
    with pytest.raises(ValueError, match="do not match"):
        ema.update(OneWeight(1.0))


def test_state_dict_round_trip_continues_bit_exactly():
    model = small_net()
    ema = ExponentialMovingAverage(model, decay=0.8, warmup=True)
    gen = torch.Generator().manual_seed(3)

    def step() -> None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen))
        ema.update(model)

    for _ in range(3):
        step()
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    gen_state = gen.get_state()
    for _ in range(3):
        step()
    finished = {k: v.clone() for k, v in ema.module.state_dict().items()}

    model.load_state_dict(model_state)
    gen.set_state(gen_state)
    ema = ExponentialMovingAverage(small_net(), decay=0.8, warmup=True)
    ema.load_state_dict(state)
    assert ema.updates == 3
    for _ in range(3):
        step()
    assert ema.updates == 6
    for name, value in ema.module.state_dict().items():
        assert torch.equal(value, finished[name]), name


def test_rejects_bad_decay():
    with pytest.raises(ValueError):
        ExponentialMovingAverage(OneWeight(0.0), decay=1.0)
