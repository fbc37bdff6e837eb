"""GAN losses against values computed by hand (plain Python math) from small fixed tensors."""

import math

import pytest
import torch

from lungsynth.losses.adversarial import LOSSES, discriminator_loss, generator_loss, smoothed_targets

R = [1.0, -0.5, 2.0]  # raw critic outputs on real samples
F = [0.5, -1.0, 0.0]  # raw critic outputs on fake samples


def softplus(x):
    return math.log1p(math.exp(x))


def bce(xs, ts):
    """mean of -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)) = t softplus(-x) + (1 - t) softplus(x)."""
    if not isinstance(ts, list):
        ts = [ts] * len(xs)
    return sum(t * softplus(-x) + (1 - t) * softplus(x) for x, t in zip(xs, ts)) / len(xs)


def mean(xs):
    return sum(xs) / len(xs)


def relu(x):
    return max(x, 0.0)


M_R, M_F = mean(R), mean(F)  # 0.8333..., -0.1666...
REL_R = [r - M_F for r in R]  # C(r) - mean C(f)
REL_F = [f - M_R for f in F]  # C(f) - mean C(r)

EXPECTED_D = {
    "sgan": bce(R, 1.0) + bce(F, 0.0),
    "lsgan": 0.5 * mean([(r - 1) ** 2 for r in R]) + 0.5 * mean([f**2 for f in F]),
    "hinge": mean([relu(1 - r) for r in R]) + mean([relu(1 + f) for f in F]),
    "rsgan": bce([r - f for r, f in zip(R, F)], 1.0),
    "rasgan": (bce(REL_R, 1.0) + bce(REL_F, 0.0)) / 2,
    "ralsgan": (mean([(x - 1) ** 2 for x in REL_R]) + mean([(x + 1) ** 2 for x in REL_F])) / 2,
    "rahinge": (mean([relu(1 - x) for x in REL_R]) + mean([relu(1 + x) for x in REL_F])) / 2,
}
EXPECTED_G = {
    "sgan": bce(F, 1.0),
    "lsgan": 0.5 * mean([(f - 1) ** 2 for f in F]),
    "hinge": -mean(F),
    "rsgan": bce([f - r for r, f in zip(R, F)], 1.0),
    "rasgan": (bce(REL_R, 0.0) + bce(REL_F, 1.0)) / 2,
    "ralsgan": (mean([(x + 1) ** 2 for x in REL_R]) + mean([(x - 1) ** 2 for x in REL_F])) / 2,
    "rahinge": (mean([relu(1 + x) for x in REL_R]) + mean([relu(1 - x) for x in REL_F])) / 2,
}


def _t(xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_spot_values_worked_out_by_hand():
    # a few numbers written out in full, independent of the helpers above
    assert EXPECTED_D["hinge"] == pytest.approx((0 + 1.5 + 0) / 3 + (1.5 + 0 + 1) / 3)
    assert EXPECTED_G["hinge"] == pytest.approx(0.5 / 3)
    assert EXPECTED_D["lsgan"] == pytest.approx(0.5 * (0 + 2.25 + 1) / 3 + 0.5 * (0.25 + 1 + 0) / 3)
    assert EXPECTED_G["lsgan"] == pytest.approx(0.5 * (0.25 + 4 + 1) / 3)
    # RSGAN D, pair differences 0.5, 0.5, 2.0: mean of log(1 + exp(-d))
    assert EXPECTED_D["rsgan"] == pytest.approx((2 * math.log(1 + math.exp(-0.5)) + math.log(1 + math.exp(-2))) / 3)


@pytest.mark.parametrize("name", LOSSES)
def test_losses_match_hand_computed_values(name):
    d = discriminator_loss(name, _t(R), _t(F))
    g = generator_loss(name, _t(R), _t(F))
    assert d.item() == pytest.approx(EXPECTED_D[name], rel=1e-12)
    assert g.item() == pytest.approx(EXPECTED_G[name], rel=1e-12)


def test_smoothed_targets_sgan_and_rasgan():
    t_r = [0.9, 1.2, 0.7]
    t_f = [0.1, 0.0, 0.3]
    sgan = discriminator_loss("sgan", _t(R), _t(F), real_target=_t(t_r), fake_target=_t(t_f))
    assert sgan.item() == pytest.approx(bce(R, t_r) + bce(F, t_f), rel=1e-12)
    rasgan = discriminator_loss("rasgan", _t(R), _t(F), real_target=_t(t_r), fake_target=_t(t_f))
    assert rasgan.item() == pytest.approx((bce(REL_R, t_r) + bce(REL_F, t_f)) / 2, rel=1e-12)
    rsgan = discriminator_loss("rsgan", _t(R), _t(F), real_target=_t(t_r), fake_target=_t(t_f))
    diff = [r - f for r, f in zip(R, F)]
    assert rsgan.item() == pytest.approx((bce(diff, t_r) + bce([-x for x in diff], t_f)) / 2, rel=1e-12)
    lsgan = discriminator_loss("lsgan", _t(R), _t(F), real_target=0.9, fake_target=0.1)
    assert lsgan.item() == pytest.approx(
        0.5 * mean([(r - 0.9) ** 2 for r in R]) + 0.5 * mean([(f - 0.1) ** 2 for f in F]), rel=1e-12
    )
    # RaLSGAN labels a = 2t - 1
    ralsgan = discriminator_loss("ralsgan", _t(R), _t(F), real_target=_t(t_r), fake_target=_t(t_f))
    expected = (
        mean([(x - (2 * t - 1)) ** 2 for x, t in zip(REL_R, t_r)])
        + mean([(x - (2 * t - 1)) ** 2 for x, t in zip(REL_F, t_f)])
    ) / 2
    assert ralsgan.item() == pytest.approx(expected, rel=1e-12)
    # hinge losses ignore targets
    for name in ("hinge", "rahinge"):
        assert discriminator_loss(name, _t(R), _t(F), real_target=_t(t_r), fake_target=_t(t_f)).item() == pytest.approx(
            EXPECTED_D[name]
        )


@pytest.mark.parametrize("name", LOSSES)
def test_d_loss_decreases_when_real_score_increases(name):
    real = _t([0.3, -0.2, 0.1]).requires_grad_(True)
    fake = _t([0.05, 0.4, 0.2]).requires_grad_(True)  # in (0, 1): every loss is in its active region
    discriminator_loss(name, real, fake).backward()
    assert (real.grad < 0).all(), real.grad
    assert (fake.grad > 0).all(), fake.grad
    real.grad = fake.grad = None
    generator_loss(name, real, fake).backward()
    assert (fake.grad < 0).all(), fake.grad  # G wants higher fake scores


def test_unknown_loss_lists_names():
    with pytest.raises(ValueError, match="rasgan"):
        discriminator_loss("wgan", _t(R), _t(F))
    with pytest.raises(ValueError, match="ralsgan"):
        generator_loss("nope", _t(R), _t(F))


def test_smoothed_targets_ranges_and_flips():
    gen = torch.Generator().manual_seed(0)
    t_r, t_f = smoothed_targets(10_000, gen, smoothing=True, flip_prob=0.0)
    assert t_r.min() >= 0.7 and t_r.max() <= 1.2 and t_f.min() >= 0 and t_f.max() <= 0.3
    t_r, t_f = smoothed_targets(10_000, torch.Generator().manual_seed(1), smoothing=False, flip_prob=0.2)
    flipped = (t_r == 0).float().mean().item()
    assert 0.18 < flipped < 0.22
    assert torch.equal(t_r + t_f, torch.ones(10_000))


def test_the_relativistic_family_is_named_among_the_losses():
    from lungsynth.losses.adversarial import LOSSES, RELATIVISTIC

    assert RELATIVISTIC <= set(LOSSES) and {"sgan", "lsgan", "hinge"}.isdisjoint(RELATIVISTIC)
