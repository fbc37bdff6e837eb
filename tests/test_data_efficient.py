"""Data-efficient switches of the per-class GANs: bit-exact resume with every switch on, EMA weights
are what generation uses, and with every switch off nothing changes (no draws, same checkpoints)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from lungsynth.artifacts import torch_load, torch_save
from lungsynth.config import validate_config
from lungsynth.engine import CheckpointStore, TrainingLoop, run_fingerprint
from lungsynth.errors import ConfigError
from lungsynth.methods import data_efficient
from lungsynth.methods.data_efficient import (AUGMENT_STREAMS, R1, SWITCHES, Augmenter, DataEfficient,
                                              DataEfficientSettings, fingerprint_view, overfit_logits)
from lungsynth.methods.dcgan import train as dcgan_train
from lungsynth.methods.dcgan.jobs import train_dcgan_job
from lungsynth.methods.dcgan.train import DCGANSettings, load_generator, train_dcgan
from lungsynth.methods.lusgan import train as lus_train
from lungsynth.methods.lusgan.train import LUSSettings, train_lus_gan

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DC_MODEL = {"latent_dim": 8, "generator_widths": [16, 8], "discriminator_widths": [8, 16]}
LUS_MODEL = {"generator": "baseline", "latent_dim": 8, "generator_widths": [16, 8, 4], "discriminator_widths": [8, 16],
             "pack": 2, "dropout": 0.2, "spectral_norm": False}
# every switch on; ADA moves p by 16 / 64 = 0.25 per adjustment (4 critic steps of 4 images; PACGAN: 2 packs each),
# its target below the 0.6 of ADA so that the untrained critics of these tiny runs (r_t 0.25-0.5) already move it
ALL_ON = {"diffaugment": "translation,cutout,color", "ada_target": 0.2, "ada_speed_images": 64,
          "ema_decay": 0.99, "r1_gamma": 1.0, "r1_every": 2}


def _images(n=12, size=16):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)


def _dcgan(**overrides):
    return DCGANSettings(**({"epochs": 3, "batch_size": 4, "checkpoint_every": 3, "device": "cpu"} | overrides))


def _lus(**overrides):
    base = {"iterations": 8, "batch_size": 4, "checkpoint_every": 3, "device": "cpu", "d_lr_decay": 0.05}
    return LUSSettings(**(base | overrides))


FAMILIES = {
    "dcgan": (train_dcgan, DC_MODEL, _dcgan),
    "lus": (train_lus_gan, LUS_MODEL, _lus),
    "lus_improved": (train_lus_gan, LUS_MODEL | {"generator": "improved", "spectral_norm": True},
                     lambda **o: _lus(loss="rahinge", **o)),
}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- every switch on ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resume_with_every_switch_on_equals_the_uninterrupted_run(tmp_path, family):
    train, model, settings_of = FAMILIES[family]
    images, settings = _images(), settings_of(**ALL_ON)
    full = train(images, model, settings, tmp_path / "full", progress=False)

    work = tmp_path / "killed"
    assert train(images, model, settings, work, progress=False, stop_after=5)["stopped_at"] == 5
    assert CheckpointStore(work / "checkpoints").steps()[-1] == 3  # mid-way between ADA adjustments
    resumed = train(images, model, settings, work, progress=False)
    assert resumed["resumed_from"] == 3
    assert _same_weights(full["generator"], resumed["generator"])
    log_full = pd.read_csv(full["loss_csv"])
    pd.testing.assert_frame_equal(log_full, pd.read_csv(resumed["loss_csv"]), check_exact=True)
    last = f"ckpt_{full['steps']:09d}.pt"
    a, b = torch_load(tmp_path / "full" / "checkpoints" / last), torch_load(work / "checkpoints" / last)
    assert {"augment", "ema"} <= set(a) and a["augment"] == b["augment"] and a["ema"]["updates"] == b["ema"]["updates"]
    assert _same_weights(a["ema"]["module"], b["ema"]["module"]) and _same_weights(a["generator"], b["generator"])
    # ADA moved the probability (the log records the p each step used)
    assert log_full["augment_p"].iloc[0] == 0.0 and log_full["augment_p"].nunique() > 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_result_holds_the_ema_weights(tmp_path, family):
    train, model, settings_of = FAMILIES[family]
    result = train(_images(), model, settings_of(ema_decay=0.9), tmp_path, progress=False)
    state = torch_load(tmp_path / "checkpoints" / f"ckpt_{result['steps']:09d}.pt")
    assert _same_weights(result["generator"], state["ema"]["module"])
    assert not _same_weights(result["generator"], state["generator"])  # the raw last weights differ
    g_steps = result["steps"] * (settings_of().g_steps_per_d if train is train_lus_gan else 1)
    assert state["ema"]["updates"] == g_steps  # one update per generator step


def test_the_generate_job_samples_the_ema_generator(tmp_path):
    images = _images()
    split = tmp_path / "train.pt"
    torch_save(split, {"images": images, "labels": torch.zeros(len(images), dtype=torch.long), "classes": ["covid"]})
    settings = dataclasses.asdict(_dcgan(ema_decay=0.9))
    train_dcgan_job(split, "covid", model_config=DC_MODEL, settings=settings, work_dir=tmp_path / "work",
                    generator_out=tmp_path / "generator.pt", losses_out=tmp_path / "losses.csv", progress=False)
    ema = torch_load(tmp_path / "work" / "checkpoints" / "ckpt_000000009.pt")["ema"]["module"]
    assert _same_weights(torch_load(tmp_path / "generator.pt")["generator"], ema)
    assert _same_weights(load_generator(tmp_path / "generator.pt").state_dict(), ema)


@pytest.mark.parametrize("switch", [{"diffaugment": "translation"}, {"diffaugment": "cutout", "augment_p": 0.5},
                                    {"r1_gamma": 1.0}, {"lr_d": 1e-3}],
                         ids=["diffaugment", "augment_p", "r1", "ttur"])
def test_each_switch_changes_the_run(tmp_path, switch):
    images = _images()
    off = train_dcgan(images, DC_MODEL, _dcgan(epochs=1), tmp_path / "off", progress=False)
    on = train_dcgan(images, DC_MODEL, _dcgan(epochs=1, **switch), tmp_path / "on", progress=False)
    assert not _same_weights(off["generator"], on["generator"])


# --- every switch off: nothing changes -------------------------------------------------------------


class _Bypass:
    """What the trainers did before the switches existed."""

    def __init__(self, settings, loop, generator):
        self.ema = None
        self.augment = type("A", (), {"p": 0.0, "__call__": lambda self, x, *a, **k: x})()
        self.r1 = type("R", (), {"watch": lambda self, x, step: x, "add": lambda self, loss, *a: loss})()

    def state(self):
        return {}

    def observe(self, logits):
        pass

    def after_generator_step(self, generator):
        pass

    def row(self, p):
        return ()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_switches_off_equal_the_run_without_the_module(tmp_path, monkeypatch, family):
    train, model, settings_of = FAMILIES[family]
    images, settings = _images(), settings_of()
    off = train(images, model, settings, tmp_path / "off", progress=False)
    module = dcgan_train if train is train_dcgan else lus_train
    monkeypatch.setattr(module, "DataEfficient", _Bypass)
    bypassed = train(images, model, settings, tmp_path / "bypassed", progress=False)
    assert _same_weights(off["generator"], bypassed["generator"])
    assert (tmp_path / "off" / "losses.csv").read_bytes() == (tmp_path / "bypassed" / "losses.csv").read_bytes()
    # the checkpoint holds what it held before the switches, under the fingerprint of the old settings fields
    state = torch_load(tmp_path / "off" / "checkpoints" / f"ckpt_{off['steps']:09d}.pt")
    expected = {"step", "fingerprint", "generator", "discriminator", "opt_g", "opt_d"}
    assert set(state) == (expected if train is train_dcgan else expected | {"sched_d"})
    new_fields = (*SWITCHES, "lr_d") if train is train_dcgan else SWITCHES  # the LUS GANs always had lr_d
    old_fields = {k: v for k, v in dataclasses.asdict(settings).items() if k not in new_fields}
    generator, discriminator = (dcgan_train.build_dcgan if train is train_dcgan else lus_train.build_lus_gan)(
        model, 1, 16)
    assert state["fingerprint"] == run_fingerprint(images, model, old_fields, generator, discriminator)


def test_off_pieces_are_identities_that_draw_nothing():
    loop = TrainingLoop(None, total=1, seed=0, device="cpu")
    x = torch.randn(2, 1, 8, 8)
    net = torch.nn.Linear(2, 2)
    tricks = DataEfficient(DataEfficientSettings(), loop, net)
    state = torch.random.get_rng_state()
    assert tricks.augment(x, "real", 0) is x and tricks.augment.p == 0.0
    out, maps = tricks.augment(x, "fake", 0, 1, extra=[x])
    assert out is x and maps[0] is x
    assert tricks.r1.watch(x, 0) is x and tricks.r1.add(x, x, x, 0) is x
    tricks.observe(x)
    tricks.after_generator_step(net)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert tricks.state() == {} and tricks.ema is None and tricks.row(0.5) == ()
    assert data_efficient.log_columns(DataEfficientSettings()) == ()
    assert fingerprint_view(DCGANSettings(), ("lr_d",)).keys() == {
        f.name for f in dataclasses.fields(DCGANSettings)} - set(SWITCHES) - {"lr_d"}
    assert "r1_gamma" in fingerprint_view(DCGANSettings(r1_gamma=1.0))


# --- the pieces ------------------------------------------------------------------------------------


def test_augmenter_streams_real_and_fake_independently_and_reproducibly():
    loop = TrainingLoop(None, total=1, seed=5, device="cpu")
    aug = Augmenter(DataEfficientSettings(diffaugment="translation,cutout,color"), loop)
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    real, fake = aug(x, "real", 3), aug(x, "fake", 3)
    assert not torch.equal(real, fake) and not torch.equal(real, aug(x, "real", 3, 1))
    assert torch.equal(real, aug(x, "real", 3))
    from lungsynth.transforms.diffaugment import diff_augment
    expected = diff_augment(x, "translation,cutout,color", loop.stream(AUGMENT_STREAMS["real"], 3, 0), 1.0)
    assert torch.equal(real, expected)
    assert set(AUGMENT_STREAMS.values()).isdisjoint({1, 2, 3, 11, 12, 31, 32})  # streams the trainers use


def test_r1_is_lazy_and_scaled_by_its_interval():
    r1 = R1(gamma=2.0, every=4)
    w = torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = r1.watch(torch.rand(5, 1, 3, 3, dtype=torch.float64), step=8)
    assert x.requires_grad
    loss = torch.tensor(1.0, dtype=torch.float64)
    total = r1.add(loss, (w * x).sum(dim=(1, 2, 3)), x, step=8)
    assert total.item() == pytest.approx(1.0 + 4 * 2.0 / 2 * w.pow(2).sum().item(), rel=1e-12)
    y = torch.rand(5, 1, 3, 3)
    assert r1.watch(y, step=9) is y and r1.add(loss, y, y, step=9) is loss
    assert not R1().due(0)


def test_overfit_logits_put_the_real_side_positive():
    real, fake = torch.tensor([3.0, 5.0]), torch.tensor([4.0, 6.0])
    assert torch.equal(overfit_logits("rasgan", real, fake), torch.tensor([-2.0, 0.0]))
    assert torch.equal(overfit_logits("lsgan", real, fake), real - 0.5)
    assert overfit_logits("sgan", real, fake) is real


def test_ada_without_a_policy_is_an_error():
    loop = TrainingLoop(None, total=1, seed=0, device="cpu")
    with pytest.raises(ValueError, match="diffaugment"):
        Augmenter(DataEfficientSettings(ada_target=0.6), loop)
    with pytest.raises(ConfigError, match="lusgan.per_class.1.ada_target"):
        validate_config({"lusgan": {"per_class": {"1": {"ada_target": 0.6}}}})
    with pytest.raises(ConfigError, match="dcgan.train.diffaugment"):
        validate_config({"dcgan": {"train": {"diffaugment": "translation,rotation"}}})
    config = validate_config({"dcgan": {"train": {"diffaugment": "translation, color", "ada_target": 0.6}}})
    assert DCGANSettings.from_dict(config["dcgan"]["train"]).diffaugment == "translation, color"
