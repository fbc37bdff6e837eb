"""Seed 003's LUS GAN: generator/PACGAN shapes, parameter counts, packing, training with exact resume."""

import math

import pandas as pd
import pytest
import torch
from torch.nn.utils import parametrize

from lungsynth.methods.unconditional import sample_generator
from lungsynth.artifacts import torch_load, torch_save
from lungsynth.losses.adversarial import LOSSES
from lungsynth.networks.dcgan import count_parameters
from lungsynth.networks.lus_gan import ImprovedLUSGenerator, LUSGenerator, PackedDiscriminator
from lungsynth.engine import CheckpointStore
from lungsynth.methods.lusgan.train import LUSSettings, load_lus_generator, train_lus_gan


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LUSGenerator, ImprovedLUSGenerator])
@pytest.mark.parametrize("size, widths", [(64, (32, 16, 8, 8, 4)), (256, (16, 8, 8, 4, 4, 4, 4))])
def test_generator_shapes_and_range(cls, size, widths):
    g = cls(latent_dim=8, out_channels=1, image_size=size, widths=widths, dropout=0.1)
    out = g(torch.randn(2, 8))
    assert out.shape == (2, 1, size, size)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("pack", [1, 2, 4])
@pytest.mark.parametrize("size, widths", [(64, (4, 8, 8)), (256, (4, 4, 8, 8, 8, 8))])
def test_discriminator_shapes(pack, size, widths):
    d = PackedDiscriminator(in_channels=3, image_size=size, widths=widths, pack=pack)
    assert d(torch.randn(8, 3, size, size)).shape == (8 // pack,)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="image_size"):
        LUSGenerator(image_size=96)
    with pytest.raises(ValueError, match="widths"):
        LUSGenerator(image_size=64)  # 7 paper widths but 64 px needs 5
    with pytest.raises(ValueError, match="image_size"):
        PackedDiscriminator(image_size=40, widths=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="pack=2"):
        PackedDiscriminator(image_size=16, widths=(4, 4))(torch.randn(3, 1, 16, 16))


def test_paper_configuration_parameter_counts():
    # 128->1024 (4x4 from 1x1), 6 transposed convs 1024->...->16, BN on 7 blocks, 3x3 conv 16->1
    assert count_parameters(LUSGenerator()) == 13_283_441
    assert count_parameters(ImprovedLUSGenerator()) == 8_389_249
    assert count_parameters(PackedDiscriminator()) == 2_804_096  # PACGAN2, greyscale, BN
    assert count_parameters(PackedDiscriminator(spectral_norm=True)) == 2_802_176
    assert count_parameters(PackedDiscriminator(pack=1)) == 2_803_840


def test_packing_concatenates_samples_on_channels():
    torch.manual_seed(0)
    d = PackedDiscriminator(in_channels=1, image_size=16, widths=(4, 8), pack=2).eval()
    first = d.net[0]
    assert first.in_channels == 2
    seen = {}
    first.register_forward_hook(lambda m, inp, out: seen.update(input=inp[0]))
    x = torch.randn(6, 1, 16, 16)
    out = d(x)
    assert seen["input"].shape == (3, 2, 16, 16)
    assert torch.equal(seen["input"][1, 0], x[2, 0]) and torch.equal(seen["input"][1, 1], x[3, 0])
    # swapping the two samples inside a pack changes that pack's logit only
    swapped = d(x[[1, 0, 2, 3, 4, 5]])
    assert not torch.allclose(swapped[0], out[0])
    assert torch.equal(swapped[1:], out[1:])
    # permuting whole packs permutes the logits
    torch.testing.assert_close(d(x[[4, 5, 0, 1, 2, 3]]), out[[2, 0, 1]])


def test_spectral_norm_in_improved_variants():
    g = ImprovedLUSGenerator(latent_dim=8, image_size=16, widths=(8, 4, 4))
    convs = [m for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert sum(parametrize.is_parametrized(m, "weight") for m in convs) == len(convs) - 1  # all but the output conv
    assert any(isinstance(m, torch.nn.SELU) for m in g.modules())
    assert any(isinstance(m, torch.nn.Upsample) for m in g.modules())
    assert not any(isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.BatchNorm2d)) for m in g.net[3:])
    plain = LUSGenerator(latent_dim=8, image_size=16, widths=(8, 4, 4))
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    d = PackedDiscriminator(image_size=16, widths=(4, 4, 4), spectral_norm=True)
    assert all(parametrize.is_parametrized(m, "weight") for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


# --- training ---------------------------------------------------------------------------------

MODEL = {
    "generator": "baseline",
    "latent_dim": 8,
    "generator_widths": [16, 8, 4],
    "discriminator_widths": [8, 16],
    "pack": 2,
    "dropout": 0.2,
    "spectral_norm": False,
}


def _images(n=12, size=16):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)


def _settings(**overrides):
    base = {"iterations": 6, "batch_size": 4, "checkpoint_every": 2, "device": "cpu", "d_lr_decay": 0.05}
    return LUSSettings(**(base | overrides))


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_without_nan(tmp_path, loss):
    result = train_lus_gan(_images(), MODEL, _settings(iterations=3, loss=loss), tmp_path, progress=False)
    log = pd.read_csv(result["loss_csv"])
    assert list(log.columns) == ["step", "loss_d", "loss_g", "d_real", "d_fake", "lr_d"]
    assert list(log["step"]) == [0, 1, 2]
    assert log.notna().all().all() and all(math.isfinite(v) for v in log[["loss_d", "loss_g"]].to_numpy().ravel())
    assert all(torch.isfinite(t).all() for t in result["generator"].values() if t.is_floating_point())


@pytest.mark.parametrize("model", [MODEL, MODEL | {"generator": "improved", "spectral_norm": True}])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, model):
    images = _images()
    settings = _settings()
    full = train_lus_gan(images, model, settings, tmp_path / "full", progress=False)

    work = tmp_path / "killed"
    stopped = train_lus_gan(images, model, settings, work, progress=False, stop_after=3)
    assert stopped["stopped_at"] == 3
    assert CheckpointStore(work / "checkpoints").steps()[-1] == 2  # iteration 3 is lost
    resumed = train_lus_gan(images, model, settings, work, progress=False)
    assert resumed["resumed_from"] == 2
    for name, tensor in full["generator"].items():
        assert torch.equal(tensor, resumed["generator"][name]), name
    log_full = pd.read_csv(full["loss_csv"])
    pd.testing.assert_frame_equal(log_full, pd.read_csv(resumed["loss_csv"]), check_exact=True)

    # critic lr after k iterations is lr_d * (1 - decay)^k, in the log and in the checkpoint
    lr, decay = settings.lr_d, settings.d_lr_decay
    for k, value in enumerate(log_full["lr_d"]):
        assert value == pytest.approx(lr * (1 - decay) ** k, rel=1e-12)
    for folder in ("full", "killed"):
        state = torch_load(tmp_path / folder / "checkpoints" / "ckpt_000000006.pt")
        assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(lr * (1 - decay) ** 6, rel=1e-12)
        assert state["sched_d"]["last_epoch"] == 6


def test_three_generator_steps_per_iteration(tmp_path):
    train_lus_gan(_images(), MODEL, _settings(iterations=4, checkpoint_every=4, g_steps_per_d=3), tmp_path,
                  progress=False)
    state = torch_load(tmp_path / "checkpoints" / "ckpt_000000004.pt")
    g_steps = {int(s["step"]) for s in state["opt_g"]["state"].values()}
    d_steps = {int(s["step"]) for s in state["opt_d"]["state"].values()}
    assert g_steps == {12} and d_steps == {4}


def test_odd_batch_is_trimmed_to_a_multiple_of_pack(tmp_path):
    result = train_lus_gan(_images(n=7), MODEL | {"pack": 2}, _settings(iterations=2, batch_size=5), tmp_path,
                           progress=False)
    assert result["batch_size"] == 4
    result = train_lus_gan(_images(n=5), MODEL | {"pack": 2}, _settings(iterations=1, batch_size=48),
                           tmp_path / "small", progress=False)
    assert result["batch_size"] == 4
    with pytest.raises(ValueError, match="pack"):
        train_lus_gan(_images(n=1), MODEL, _settings(iterations=1), tmp_path / "one", progress=False)


def test_saved_generator_samples_uint8_over_full_range(tmp_path):
    result = train_lus_gan(_images(), MODEL, _settings(iterations=2), tmp_path, progress=False)
    torch_save(tmp_path / "g.pt", {k: result[k] for k in ("generator", "model_config", "channels", "image_size")})
    generator = load_lus_generator(tmp_path / "g.pt")
    assert not generator.training
    images = sample_generator(generator, 6, seed=1, batch_size=4)
    assert images.dtype == torch.uint8 and images.shape == (6, 1, 16, 16)
    raw = generator(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)))
    assert raw.min() < 0  # tanh output uses both halves; encode_uint8 maps it to 0..255, not clipped
    assert torch.equal(sample_generator(generator, 6, seed=1), images)
