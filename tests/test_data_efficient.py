"""Data-efficient switches of the per-class GANs and the conditional GANs: bit-exact resume with every
switch on, EMA weights are what generation uses, and with every switch off nothing changes (no draws,
same checkpoints); the conditional GANs' discriminators see map and image augmented together."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from lungsynth.artifacts import torch_load, torch_save
from lungsynth.config import validate_config
from lungsynth.data.preprocess import decode_uint8
from lungsynth.data.segmentation import N_LABELS
from lungsynth.engine import CheckpointStore, TrainingLoop, run_fingerprint
from lungsynth.errors import ConfigError
from lungsynth.methods import data_efficient
from lungsynth.methods.cgan import train as cgan_train
from lungsynth.methods.cgan.specs import METHODS as CGAN_METHODS
from lungsynth.methods.cgan.specs import method_spec, method_steps
from lungsynth.methods.cgan.train import CGANSettings, train_cgan_step
from lungsynth.methods.data_efficient import (AUGMENT_STREAMS, R1, SWITCHES, Augmenter, DataEfficient,
                                              DataEfficientSettings, fingerprint_view, overfit_logits)
from lungsynth.methods.dcgan import train as dcgan_train
from lungsynth.methods.dcgan.jobs import train_dcgan_job
from lungsynth.methods.dcgan.train import DCGANSettings, load_generator, train_dcgan
from lungsynth.methods.lusgan import train as lus_train
from lungsynth.methods.lusgan.train import LUSSettings, train_lus_gan
from lungsynth.networks.cgan import MultiscaleDiscriminator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DC_MODEL = {"latent_dim": 8, "generator_widths": [16, 8], "discriminator_widths": [8, 16]}
LUS_MODEL = {"generator": "baseline", "latent_dim": 8, "generator_widths": [16, 8, 4], "discriminator_widths": [8, 16],
             "pack": 2, "dropout": 0.2, "spectral_norm": False}
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

# every switch on; ADA moves p by 16 / 64 = 0.25 per adjustment (4 critic steps of 4 images; PACGAN: 2 packs each),
# its target below the 0.6 of ADA so that the untrained critics of these tiny runs (r_t 0.25-0.5) already move it
ALL_ON = {"diffaugment": "translation,cutout,color", "ada_target": 0.2, "ada_speed_images": 64,
          "ema_decay": 0.99, "r1_gamma": 1.0, "r1_every": 2, "standing_stats": 2}


def _images(n=12, size=16):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)


def _dcgan(**overrides):
    return DCGANSettings(**({"epochs": 3, "batch_size": 4, "checkpoint_every": 3, "device": "cpu"} | overrides))


def _lus(**overrides):
    base = {"iterations": 8, "batch_size": 4, "checkpoint_every": 3, "device": "cpu", "d_lr_decay": 0.05}
    return LUSSettings(**(base | overrides))


CGAN_MODEL = {
    "width": 4, "n_downsample_global": 2, "n_blocks_global": 1, "n_blocks_local": 1, "desum_hidden": 4,
    "fixed_alpha": 0.5, "d_width": 4, "d_layers": 2, "dfm_layer": 1, "dfm_hidden": 4, "fixed_beta": 0.75,
    "unet_width": 4, "spade_width": 2, "spade_hidden": 4, "style_dim": 4,
}
LUNG_VALUE = 60  # uint8 intensity per label of the synthetic pairs (label k -> k * 60)


def _pairs(images: torch.Tensor, noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Label maps (two lungs, a ground-glass or consolidation lesion in the left one) and CT-like
    slices that follow them (label k -> k * 60, plus up to 31 of ``images`` as noise unless ``noise`` is off)."""
    n, _, size, _ = images.shape
    labels = torch.zeros(n, size, size, dtype=torch.uint8)
    labels[:, size // 4: 3 * size // 4, 1: size // 2 - 1] = 1
    labels[:, size // 4: 3 * size // 4, size // 2 + 1: size - 1] = 1
    labels[:, 3 * size // 8: 5 * size // 8, 2: size // 4 + 1] = (2 + images[:, 0, 0, 0] % 2).view(-1, 1, 1).to(torch.uint8)
    slices = labels.int() * LUNG_VALUE + (images[:, 0].int() // 8 if noise else 0)
    return slices.clamp(0, 255).to(torch.uint8)[:, None], labels


def _cgan(**overrides):
    base = {"epochs": 2, "decay_epochs": 1, "batch_size": 4, "checkpoint_every": 3, "device": "cpu"}
    return CGANSettings(**(base | overrides))


def _cgan_family(method: str, step: str):
    """``(train, spec, settings)`` of one step of a conditional GAN, called like the per-class trainers
    (the label maps and slices come from :func:`_pairs` of the images; 3 x 3 iterations)."""

    def train(images, spec, settings, work_dir, **kwargs):
        result = train_cgan_step(*_pairs(images), spec, settings, step, work_dir, **kwargs)
        if "iterations" in result:
            result["steps"] = result["iterations"]
        return result

    train.cgan_step = step
    return train, method_spec(method, CGAN_MODEL), _cgan


FAMILIES = {
    "dcgan": (train_dcgan, DC_MODEL, _dcgan),
    "lus": (train_lus_gan, LUS_MODEL, _lus),
    "lus_improved": (train_lus_gan, LUS_MODEL | {"generator": "improved", "spectral_norm": True},
                     lambda **o: _lus(loss="rahinge", **o)),
    "cgan_globallocal": _cgan_family("globallocal", "joint"),  # LSGAN, DFM, two PatchGANs
    "cgan_spade": _cgan_family("spade", "full"),  # hinge, spectral-norm PatchGANs, TTUR
}
# the other conditional GANs and steps, checked with every switch off too
MORE_CGAN = {
    "cgan_globallocal_global": _cgan_family("globallocal", "global"),  # half resolution, G1 only
    "cgan_pix2pixhd_local": _cgan_family("pix2pixhd", "local"),
    "cgan_pix2pix": _cgan_family("pix2pix", "full"),  # BCE + L1, batch norm, one PatchGAN
    "cgan_sean": _cgan_family("sean", "full"),
}
# the tiny LSGAN critic of the globallocal run stays below the 0.5 midpoint of its targets on real pairs
# (ADA's r_t = -1 at every adjustment), so ADA rightly keeps p at 0 there
ADA_STAYS_AT_ZERO = {"cgan_globallocal"}


def _is_cgan(train) -> bool:
    return hasattr(train, "cgan_step")


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
    assert log_full["augment_p"].iloc[0] == 0.0 and a["augment"]["ada"]["estimate"] is not None
    assert log_full["augment_p"].nunique() == 1 if family in ADA_STAYS_AT_ZERO else log_full["augment_p"].nunique() > 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_result_holds_the_ema_weights(tmp_path, family):
    train, model, settings_of = FAMILIES[family]
    result = train(_images(), model, settings_of(ema_decay=0.9), tmp_path, progress=False)
    state = torch_load(tmp_path / "checkpoints" / f"ckpt_{result['steps']:09d}.pt")
    assert _same_weights(result["generator"], state["ema"]["module"])
    assert not _same_weights(result["generator"], state["generator"])  # the raw last weights differ
    g_steps = result["steps"] * (settings_of().g_steps_per_d if train is train_lus_gan else 1)
    assert state["ema"]["updates"] == g_steps  # one update per generator step


@pytest.mark.parametrize("family", list(FAMILIES))
def test_standing_statistics_replace_only_the_batch_norm_buffers_of_the_ema_generator(tmp_path, family):
    train, model, settings_of = FAMILIES[family]
    result = train(_images(), model, settings_of(ema_decay=0.9, standing_stats=3), tmp_path, progress=False)
    ema = torch_load(tmp_path / "checkpoints" / f"ckpt_{result['steps']:09d}.pt")["ema"]["module"]
    buffers = {k for k in ema if k.endswith(BN_BUFFERS)}
    if not buffers:  # a generator without batch norm (the improved LUS one) is saved as it was
        assert _same_weights(result["generator"], ema)
        return
    assert _same_weights({k: v for k, v in result["generator"].items() if k not in buffers},
                                     {k: v for k, v in ema.items() if k not in buffers})
    assert all(int(result["generator"][k]) == 3 for k in buffers if k.endswith("num_batches_tracked"))
    assert not torch.equal(*(d[next(k for k in buffers if k.endswith("running_mean"))]
                             for d in (result["generator"], ema)))
    again = train(_images(), model, settings_of(ema_decay=0.9, standing_stats=3), tmp_path, progress=False)
    assert _same_weights(result["generator"], again["generator"])  # a rerun of the finished job: the same statistics


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
                                    {"r1_gamma": 1.0}, {"lr_d": 1e-3}, {"standing_stats": 2}],
                         ids=["diffaugment", "augment_p", "r1", "ttur", "standing_stats"])
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
        self.augment = type("A", (), {"p": 0.0, "enabled": False, "__call__": lambda self, x, *a, **k: (
            (x, list(k["extra"])) if k.get("extra") is not None else x)})()
        self.r1 = type("R", (), {"watch": lambda self, x, step: x, "add": lambda self, loss, *a: loss})()

    def state(self):
        return {}

    def observe(self, logits):
        pass

    def after_generator_step(self, generator):
        pass

    def row(self, p):
        return ()

    def trained_generator(self, generator, run_batch):
        return generator


@pytest.mark.parametrize("family", list(FAMILIES) + list(MORE_CGAN))
def test_switches_off_equal_the_run_without_the_module(tmp_path, monkeypatch, family):
    train, model, settings_of = (FAMILIES | MORE_CGAN)[family]
    images, settings = _images(), settings_of()
    off = train(images, model, settings, tmp_path / "off", progress=False)
    module = dcgan_train if train is train_dcgan else cgan_train if _is_cgan(train) else lus_train
    monkeypatch.setattr(module, "DataEfficient", _Bypass)
    bypassed = train(images, model, settings, tmp_path / "bypassed", progress=False)
    assert _same_weights(off["generator"], bypassed["generator"])
    if _is_cgan(train):
        assert _same_weights(off["discriminator"], bypassed["discriminator"])
    assert (tmp_path / "off" / "losses.csv").read_bytes() == (tmp_path / "bypassed" / "losses.csv").read_bytes()
    # the checkpoint holds what it held before the switches, under the fingerprint of the old settings fields
    state = torch_load(tmp_path / "off" / "checkpoints" / f"ckpt_{off['steps']:09d}.pt")
    expected = {"step", "fingerprint", "generator", "discriminator", "opt_g", "opt_d"}
    new_fields = (*SWITCHES, "lr_d") if train is train_dcgan else SWITCHES  # the LUS GANs always had lr_d
    old_fields = {k: v for k, v in dataclasses.asdict(settings).items() if k not in new_fields}
    if _is_cgan(train):
        assert set(state) == expected | {"dfm"}
        nets = cgan_train.build_networks(model, 1, 16)
        assert state["fingerprint"] == run_fingerprint(*_pairs(images), model, old_fields, train.cgan_step, None,
                                                       nets["generator"], nets["discriminator"], nets["dfm"])
        return
    assert set(state) == (expected if train is train_dcgan else expected | {"sched_d"})
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
    assert fingerprint_view(CGANSettings()).keys() == {f.name for f in dataclasses.fields(CGANSettings)} - set(SWITCHES)


# --- the conditional GANs --------------------------------------------------------------------------


@pytest.mark.parametrize("switch", [{"diffaugment": "translation"}, {"diffaugment": "cutout", "augment_p": 0.5},
                                    {"diffaugment": "color"}, {"r1_gamma": 1.0}, {"ema_decay": 0.9}],
                         ids=["diffaugment", "augment_p", "color", "r1", "ema"])
@pytest.mark.parametrize("method", ["globallocal", "spade"])
def test_each_switch_changes_the_cgan_run(tmp_path, method, switch):
    images, labels = _pairs(_images())
    spec, step = method_spec(method, CGAN_MODEL), "full" if method == "spade" else "joint"
    off = train_cgan_step(images, labels, spec, _cgan(epochs=1, decay_epochs=0), step, tmp_path / "off",
                          progress=False)
    on = train_cgan_step(images, labels, spec, _cgan(epochs=1, decay_epochs=0, **switch), step, tmp_path / "on",
                         progress=False)
    assert not _same_weights(off["generator"], on["generator"])


@pytest.mark.parametrize("method", CGAN_METHODS)
def test_every_cgan_method_and_step_takes_every_switch_and_starts_from_the_last_ema(tmp_path, method):
    images, labels = _pairs(_images())
    spec = method_spec(method, CGAN_MODEL)
    settings = _cgan(epochs=1, decay_epochs=1, **ALL_ON)
    init = None
    for step in method_steps(spec):
        result = train_cgan_step(images, labels, spec, settings, step, tmp_path / step, init=init, progress=False)
        log = pd.read_csv(result["loss_csv"])
        assert len(log) == result["iterations"] == 6
        assert log[["loss_d", "loss_g_adv", "loss_fm", "loss_l1", "loss_dfm", "augment_p"]].notna().all().all()
        state = torch_load(tmp_path / step / "checkpoints" / f"ckpt_{result['iterations']:09d}.pt")
        # what model.pt holds: the EMA weights, with standing batch-norm statistics (pix2pix's U-Net)
        assert _same_weights(*({k: v for k, v in d.items() if not k.endswith(BN_BUFFERS)}
                               for d in (result["generator"], state["ema"]["module"])))
        assert state["ema"]["updates"] == result["iterations"]
        if step == "global":
            g1 = [name for name in result["generator"] if name.startswith("global_generator.")]
            assert any(not torch.equal(result["generator"][n], state["generator"][n]) for n in g1)  # EMA != raw G1
        if step == "local":  # G1 is frozen: this step's G1, raw and averaged, is the global step's EMA G1
            for name in g1:
                assert torch.equal(result["generator"][name], init["generator"][name]), name
                assert torch.equal(state["generator"][name], init["generator"][name]), name
        init = result


def _discriminator_inputs(monkeypatch, images, labels, settings, tmp_path):
    """The discriminator inputs of one joint iteration of globallocal (batch 4): critic step real and
    fake pair, the DFM objective's fake pair, the generator step's fake pair."""
    seen = []
    forward = MultiscaleDiscriminator.forward

    def recording(self, x):
        seen.append(x.detach().clone())
        return forward(self, x)

    with monkeypatch.context() as patch:
        patch.setattr(MultiscaleDiscriminator, "forward", recording)
        train_cgan_step(images, labels, method_spec("globallocal", CGAN_MODEL), settings, "joint", tmp_path,
                        progress=False, stop_after=1)
    inputs = [x for x in seen if x.shape[0] == 4]  # not build_networks' probe
    assert len(inputs) == 4
    return inputs


def test_cgan_map_and_image_are_augmented_together_and_feature_matching_compares_like_with_like(tmp_path,
                                                                                                 monkeypatch):
    images, labels = _pairs(_images(), noise=False)  # every pixel's intensity is its label's
    value = decode_uint8(torch.arange(N_LABELS, dtype=torch.uint8) * LUNG_VALUE)
    geometric = _discriminator_inputs(monkeypatch, images, labels, _cgan(diffaugment="translation,cutout"),
                                      tmp_path / "geometric")
    real, fake, fake_dfm, fake_g = geometric
    for x in geometric:
        maps, image = x[:, :N_LABELS], x[:, N_LABELS:]
        assert ((maps == 0) | (maps == 1)).all() and (maps.sum(1) <= 1).all()  # still one-hot, or filled with 0
        filled = maps.sum(1, keepdim=True) == 0
        assert filled.flatten(1).any(1).all()  # every pair was shifted or cut out
        assert (image[filled] == -1).all()  # where the map was filled, so was the image
    # the real image is its map's intensities pixel for pixel: same shift and cutout for both
    maps, image = real[:, :N_LABELS], real[:, N_LABELS:]
    expected = torch.where(maps.sum(1, keepdim=True) == 0, torch.tensor(-1.0), value[maps.argmax(1, keepdim=True)])
    assert torch.equal(image, expected)
    # real and fake pairs of the critic step draw their own parameters; feature matching (the generator step
    # and the DFM objective) compares the real pair with a fake pair augmented exactly like it
    assert not torch.equal(fake[:, :N_LABELS], real[:, :N_LABELS])
    assert torch.equal(fake_g[:, :N_LABELS], real[:, :N_LABELS]) and torch.equal(fake_dfm, fake_g)

    # the intensity ops change the image only: the maps are those of the geometric policy (same draws first)
    color = _discriminator_inputs(monkeypatch, images, labels, _cgan(diffaugment="translation,cutout,color"),
                                  tmp_path / "color")
    for with_color, without in zip(color, geometric):
        assert torch.equal(with_color[:, :N_LABELS], without[:, :N_LABELS])
    real_c = color[0]
    assert not torch.equal(real_c[:, N_LABELS:], real[:, N_LABELS:])
    region = torch.where(real_c[:, :N_LABELS].sum(1) == 0, 0, real_c[:, :N_LABELS].argmax(1))  # filled = background
    for b in range(len(real_c)):  # brightness and contrast are per image: one value per region still
        for k in region[b].unique():
            pixels = real_c[b, N_LABELS][region[b] == k]
            assert pixels.min() == pixels.max()


def test_cgan_ada_reads_the_patch_logits_of_every_scale():
    d_out = [[torch.zeros(2, 3, 4, 4), torch.tensor([[[[1.0, 3.0]]], [[[-2.0, 0.0]]]])],
             [torch.zeros(2, 3, 2, 2), torch.tensor([[[[2.0]]], [[[-4.0]]]])]]
    assert torch.equal(cgan_train.patch_logits(d_out), torch.tensor([2.0, -2.5]))  # mean over patches, then scales
    assert torch.equal(cgan_train.patch_logits(d_out, "sum"), torch.tensor([6.0, -6.0]))  # what R1 differentiates


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
    with pytest.raises(ConfigError, match="cgan.train.ada_target"):
        validate_config({"cgan": {"train": {"ada_target": 0.6}}})
    with pytest.raises(ConfigError, match="dcgan.train.diffaugment"):
        validate_config({"dcgan": {"train": {"diffaugment": "translation,rotation"}}})
    config = validate_config({"dcgan": {"train": {"diffaugment": "translation, color", "ada_target": 0.6}}})
    assert DCGANSettings.from_dict(config["dcgan"]["train"]).diffaugment == "translation, color"
    with pytest.raises(ConfigError, match="cgan.train.diffaugment"):
        validate_config({"cgan": {"train": {"diffaugment": "translation,rotation"}}})
    switches = {"diffaugment": "translation,cutout,color", "ada_target": 0.6, "ema_decay": 0.999, "r1_gamma": 1.0}
    cgan = CGANSettings.from_dict(validate_config({"cgan": {"train": switches}})["cgan"]["train"])
    assert {k: getattr(cgan, k) for k in switches} == switches
