"""DiffAugment ops and the ADA probability controller: gradients, seeding, distributions, map alignment."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lungsynth.engine import TrainingLoop, seeded_generator
from lungsynth.transforms.diffaugment import (
    OPS,
    AdaptiveProbability,
    brightness,
    contrast,
    cutout,
    diff_augment,
    parse_policy,
    translation,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL = "translation,cutout,color"


def gen(*parts: int) -> torch.Generator:
    return seeded_generator(*parts)


def images(batch: int = 4, channels: int = 1, size: int = 8, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Random images strictly inside (-0.9, 0.9), so the fill -1 can be told apart."""
    return (torch.rand(batch, channels, size, size, generator=gen(99, seed), dtype=dtype) * 1.8 - 0.9)


# --------------------------------------------------------------------------- policy and the pure ops


def test_policy_parsing():
    assert parse_policy("translation, cutout ,color") == ("translation", "cutout", "brightness", "contrast")
    assert parse_policy(["contrast", "translation"]) == ("contrast", "translation")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="unknown DiffAugment op"):
        parse_policy("translation,rotate")


def test_translation_moves_content_and_fills_border():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = translation(x, torch.tensor([[1, -2]]), fill=-1.0)
    expected = torch.full((1, 1, 4, 4), -1.0)
    expected[0, 0, 1:, :2] = x[0, 0, :3, 2:]  # content moved down 1, left 2
    assert torch.equal(out, expected)
    assert torch.equal(translation(x, torch.zeros(1, 2, dtype=torch.long)), x)


def test_cutout_clips_to_the_image():
    x = torch.zeros(2, 1, 4, 4)
    out = cutout(x, torch.tensor([[-1, 2, 2, 3], [1, 1, 0, 2]]), fill=5.0)
    assert out[0, 0].eq(5).nonzero().tolist() == [[0, 2], [0, 3]]
    assert torch.equal(out[1], x[1])  # height 0: untouched


def test_brightness_and_contrast_values():
    x = torch.tensor([[-1.0, 0.0], [0.5, 0.5]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    assert torch.equal(brightness(x, torch.tensor([0.0, 0.25]))[1], x[1] + 0.25)
    assert torch.equal(brightness(x, torch.tensor([0.0, 0.25]))[0], x[0])
    out = contrast(x, torch.tensor([1.0, 2.0]))
    assert torch.equal(out[0], x[0])  # factor 1: bit-exact identity
    mean = x[1].mean()
    torch.testing.assert_close(out[1], mean + 2 * (x[1] - mean))
    torch.testing.assert_close(out[1].mean(), mean)


@pytest.mark.parametrize("op", OPS)
def test_each_op_has_correct_gradients(op):
    """gradcheck in float64 with the parameters fixed by a fresh generator per call."""
    x = images(2, 2, 5, dtype=torch.float64).requires_grad_(True)

    def fn(t):
        return diff_augment(t, op, gen(7), 1.0, cutout_ratio=0.4)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
def test_gradients_reach_the_input_where_the_output_depends_on_it(op):
    x = images(6, 1, 8).requires_grad_(True)
    out = diff_augment(x, op, gen(3), 1.0)
    weights = torch.rand(out.shape, generator=gen(4)) + 0.5
    (out * weights).sum().backward()
    grad = x.grad
    assert torch.isfinite(grad).all()
    if op in ("translation", "cutout"):
        # each surviving output pixel is one input pixel: the gradient is its weight, 0 where cut/shifted out
        kept = out.detach() != -1.0
        assert math.isclose(grad.sum().item(), weights[kept].sum().item(), rel_tol=1e-5)
        assert (grad != 0).sum().item() == kept.sum().item() > 0
    else:
        assert (grad != 0).all()


# --------------------------------------------------------------------------- seeding and probability


def test_same_seed_same_output_and_different_seed_different_output():
    x = images(8, 1, 16)
    a = diff_augment(x, ALL, gen(0, 5, 1), 0.7)
    b = diff_augment(x, ALL, gen(0, 5, 1), 0.7)
    c = diff_augment(x, ALL, gen(0, 5, 2), 0.7)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_p_zero_is_identity_and_p_one_always_applies():
    x = images(32, 1, 8)
    assert torch.equal(diff_augment(x, ALL, gen(1), 0.0), x)
    for op in ("cutout", "brightness", "contrast"):
        out = diff_augment(x, op, gen(2), 1.0)
        changed = (out != x).flatten(1).any(dim=1)
        assert changed.all(), op


def test_p_selects_a_nested_share_of_the_same_draws():
    x = torch.zeros(4000, 1, 2, 2)
    changed = {p: (diff_augment(x, "brightness", gen(11), p) != 0).flatten(1).any(1) for p in (0.3, 0.6)}
    assert abs(changed[0.3].float().mean().item() - 0.3) < 0.03
    assert abs(changed[0.6].float().mean().item() - 0.6) < 0.03
    assert not (changed[0.3] & ~changed[0.6]).any()  # augmented at 0.3 -> augmented at 0.6


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="probability"):
        diff_augment(images(), ALL, gen(0), 1.5)
    with pytest.raises(ValueError, match="does not match"):
        diff_augment(images(), ALL, gen(0), extra=[torch.zeros(4, 3, 7, 8)])
    with pytest.raises(ValueError, match="extra_fill"):
        diff_augment(images(), ALL, gen(0), extra=[torch.zeros(4, 3, 8, 8)], extra_fill=[0.0, 1.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_parameters_on_gpu():
    x = images(8, 1, 16)
    cpu = diff_augment(x, ALL, gen(3), 0.8)
    gpu = diff_augment(x.cuda(), ALL, gen(3), 0.8).cpu()
    torch.testing.assert_close(gpu, cpu)


# --------------------------------------------------------------------------- real and fake draws: one distribution


def two_streams(op_policy: str, x: torch.Tensor, steps: int, p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment ``x`` at every step with the real stream (3, step) and the fake stream (4, step) of a loop."""
    loop = TrainingLoop(None, total=steps, seed=17, device="cpu", amp=False, progress=False)
    real = torch.cat([diff_augment(x, op_policy, loop.stream(3, s), p) for s in range(steps)])
    fake = torch.cat([diff_augment(x, op_policy, loop.stream(4, s), p) for s in range(steps)])
    return real, fake


def test_streams_are_independent_but_equally_distributed_brightness_contrast():
    # brightness: the mean shift of a constant image is U(-0.5, 0.5): mean 0, std 1/sqrt(12)
    real, fake = two_streams("brightness", torch.zeros(64, 1, 2, 2), steps=40)
    shift_r, shift_f = real.mean(dim=(1, 2, 3)), fake.mean(dim=(1, 2, 3))
    assert not torch.equal(shift_r, shift_f)
    for shift in (shift_r, shift_f):
        assert abs(shift.mean().item()) < 0.02
        assert abs(shift.std().item() - 1 / math.sqrt(12)) < 0.01
        assert shift.min() >= -0.5 and shift.max() <= 0.5
    # contrast: the deviation of a +-0.5 checkerboard is scaled by U(0.5, 1.5)
    board = (torch.arange(4).view(2, 2) % 3 == 0).float().sub(0.5).expand(64, 1, 2, 2)
    real, fake = two_streams("contrast", board, steps=40)
    factor_r, factor_f = (t.flatten(1).std(1) / board[0].std() for t in (real, fake))
    for factor in (factor_r, factor_f):
        assert abs(factor.mean().item() - 1.0) < 0.02
        assert abs(factor.std().item() - 1 / math.sqrt(12)) < 0.01
        assert factor.min() >= 0.5 - 1e-6 and factor.max() <= 1.5 + 1e-6


def test_streams_are_equally_distributed_translation_cutout():
    # translation of a single bright pixel at the centre of a 16x16 image: shifts uniform in [-2, 2]
    dot = torch.full((32, 1, 16, 16), -0.5)
    dot[:, :, 8, 8] = 0.5
    real, fake = two_streams("translation", dot, steps=80)
    histograms = []
    for t in (real, fake):
        where = t.flatten(1).argmax(1)
        dy, dx = where // 16 - 8, where % 16 - 8
        assert dy.abs().max() <= 2 and dx.abs().max() <= 2
        histograms.append(torch.bincount((dy + 2) * 5 + dx + 2, minlength=25).float() / len(where))
    for hist in histograms:
        assert (hist - 1 / 25).abs().max() < 0.02
    # cutout of a constant image: the share of filled pixels has the same mean in both streams
    real, fake = two_streams("cutout", torch.zeros(32, 1, 8, 8), steps=40)
    share_r, share_f = ((t == -1).float().mean(dim=(1, 2, 3)) for t in (real, fake))
    assert share_r.min() > 0 and share_r.max() <= 0.25  # a 4x4 hole, clipped by the border
    assert abs(share_r.mean().item() - share_f.mean().item()) < 0.01
    # the exact expectation: per axis the clipped length of [c - 2, c + 2) over uniform c in 0..7 is 28/8
    assert abs(share_r.mean().item() - (28 / 8) ** 2 / 64) < 0.01


# --------------------------------------------------------------------------- label map alignment


@pytest.mark.parametrize("policy", ["translation,cutout", ALL])
def test_map_and_image_stay_aligned(policy):
    batch, classes, size = 16, 3, 16
    labels = torch.randint(0, classes, (batch, size, size), generator=gen(5))
    one_hot = torch.nn.functional.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    values = torch.tensor([-0.6, 0.1, 0.8])
    image = values[labels][:, None]  # the image is a function of the label map
    out, (out_map,) = diff_augment(image, policy, gen(6), 1.0, extra=[one_hot], extra_fill=0.0)
    assert out_map.shape == one_hot.shape
    labelled = out_map.sum(1) == 1  # neither shifted-in border nor cutout
    assert (out_map.sum(1)[~labelled] == 0).all()
    assert (~labelled).any(dim=(1, 2)).all()  # every sample had a hole (cutout at p=1)
    new_labels = out_map.argmax(1)
    for b in range(batch):
        pixels, lab = out[b, 0][labelled[b]], new_labels[b][labelled[b]]
        if "color" not in policy:
            assert torch.equal(pixels, values[lab])
            assert (out[b, 0][~labelled[b]] == -1).all()
        else:
            # brightness and contrast are affine per sample: the image is still a function of the map
            for k in lab.unique():
                group = pixels[lab == k]
                assert (group - group[0]).abs().max() < 1e-5
            filled = out[b, 0][~labelled[b]]
            assert (filled - filled[0]).abs().max() < 1e-5


def test_extra_gets_geometric_ops_only_and_keeps_dtype():
    label = torch.randint(0, 4, (8, 1, 8, 8), generator=gen(8))
    x = images(8, 1, 8)
    out, (lab_out,) = diff_augment(x, "color", gen(9), 1.0, extra=[label])
    assert torch.equal(lab_out, label) and lab_out.dtype == torch.long
    assert not torch.equal(out, x)


# --------------------------------------------------------------------------- AdaptiveProbability


def test_ada_raises_p_on_overfitting_and_lowers_it_otherwise():
    ada = AdaptiveProbability(target=0.6, adjust_every=4, speed=640)
    for call in range(1, 4):
        ada.update(torch.ones(16))
        assert ada.p == 0.0, call  # no adjustment before adjust_every calls
    ada.update(torch.ones(16))
    assert ada.p == pytest.approx(16 * 4 / 640) and ada.estimate == 1.0
    for _ in range(4):
        ada.update(-torch.ones(16))
    assert ada.p == pytest.approx(0.0) and ada.estimate == -1.0
    for _ in range(4):
        ada.update(-torch.ones(16))
    assert ada.p == 0.0  # clamped
    start = AdaptiveProbability(adjust_every=1, speed=100, p=0.5)
    start.update(-torch.ones(10, 1, 3, 3))  # patch critic: 10 images
    assert start.p == pytest.approx(0.4)


def test_ada_stays_in_unit_interval():
    ada = AdaptiveProbability(target=0.6, adjust_every=2, speed=100)
    seen = []
    for _ in range(40):
        ada.update(torch.full((16,), 3.0))
        seen.append(ada.p)
    assert max(seen) == 1.0 and min(seen) >= 0.0
    assert all(0.0 <= q <= 1.0 for q in seen)


def test_ada_moves_towards_the_target():
    """Positive share 0.9 (r_t = 0.8 > 0.6) raises p; positive share 0.6 (r_t = 0.2) lowers it."""
    ada = AdaptiveProbability(target=0.6, adjust_every=1, speed=1000, p=0.5)
    ada.update(torch.tensor([1.0] * 9 + [-1.0]))
    assert ada.p > 0.5
    ada.update(torch.tensor([1.0] * 6 + [-1.0] * 4))
    assert ada.p == pytest.approx(0.5)


def test_ada_state_dict_round_trip_reproduces_the_future():
    logits = [torch.randn(8, generator=gen(21, i)) + 0.8 for i in range(30)]
    first = AdaptiveProbability(target=0.6, adjust_every=3, speed=200)
    for t in logits[:10]:  # 10 calls: stopped between two adjustments
        first.update(t)
    state = json.loads(json.dumps(first.state_dict()))  # plain ints and floats only
    future = []
    for t in logits[10:]:
        first.update(t)
        future.append(first.p)
    resumed = AdaptiveProbability(target=0.6, adjust_every=3, speed=200)
    resumed.load_state_dict(state)
    again = []
    for t in logits[10:]:
        resumed.update(t)
        again.append(resumed.p)
    assert again == future
    assert len(set(future)) > 1  # p did move


def test_ada_rejects_bad_settings():
    with pytest.raises(ValueError):
        AdaptiveProbability(target=0.0)
    with pytest.raises(ValueError):
        AdaptiveProbability(adjust_every=0)
    with pytest.raises(ValueError):
        AdaptiveProbability(p=1.5)
