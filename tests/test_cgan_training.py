"""Conditional-GAN training (seed 001 and comparators): specs, variants, schedule, resume, synthesis."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lungsynth.networks.cgan import DFMWeighting, MultiscaleDiscriminator
from lungsynth.methods.cgan.specs import method_spec, METHODS, VARIANTS
from lungsynth.methods.cgan.train import build_networks, CGANSettings, dfm_objective, load_cgan, lr_factor, method_steps, scale_weights, synthesise, train_cgan_step

TINY_MODEL = {
    "width": 4, "n_downsample_global": 2, "n_blocks_global": 1, "n_blocks_local": 1, "desum_hidden": 4,
    "fixed_alpha": 0.5, "d_width": 4, "d_layers": 2, "dfm_layer": 1, "dfm_hidden": 4, "fixed_beta": 0.75,
    "unet_width": 4, "spade_width": 2, "spade_hidden": 4, "style_dim": 4,
}
SIZE = 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, SIZE, SIZE, dtype=torch.uint8)
    labels[:, 8:24, 4:14] = 1
    labels[:, 8:24, 18:28] = 1
    labels[:, 12:18, 6:12] = torch.randint(2, 4, (n, 1, 1), generator=g).to(torch.uint8)
    images = (labels.float() * 60 + torch.rand(n, SIZE, SIZE, generator=g) * 30).clamp(0, 255).to(torch.uint8)
    return images[:, None], labels


def _settings(**kw) -> CGANSettings:
    return CGANSettings(**{"epochs": 1, "decay_epochs": 1, "batch_size": 4, "checkpoint_every": 2,
                           "device": "cpu", **kw})


def test_methods_and_variants_resolve_to_the_described_switches():
    base = method_spec("globallocal", TINY_MODEL)
    assert (base["fusion"], base["dfm"], base["n_scales"], base["n_local"]) == ("desum", "dynamic", 2, 1)
    assert method_spec("pix2pixhd", TINY_MODEL)["fusion"] == "sum"
    assert method_spec("pix2pixhd", TINY_MODEL)["dfm"] == "none"
    expected = {
        "no_desum": ("fusion", "sum"), "desum_map": ("desum_source", "map"), "fixed_alpha": ("fusion", "fixed"),
        "no_dfm": ("dfm", "none"), "dfm_half": ("dfm_source", "half"), "fixed_beta": ("dfm", "fixed"),
        "d1": ("n_scales", 1), "d3": ("n_scales", 3), "g1": ("n_local", 0), "g3": ("n_local", 2),
    }
    assert set(expected) == set(VARIANTS)
    for variant, (key, value) in expected.items():
        spec = method_spec(variant, TINY_MODEL)
        assert spec[key] == value, variant
        # exactly one switch differs from seed 001's model (d1 also drops DFM: one D leaves nothing to weight)
        changed = {k for k in base if k != "method" and spec[k] != base[k]}
        assert changed == ({key, "dfm"} if variant == "d1" else {key}), variant
    with pytest.raises(ValueError, match="unknown method"):
        method_spec("cyclegan", TINY_MODEL)


def test_steps_per_method():
    assert method_steps(method_spec("globallocal", TINY_MODEL)) == ("global", "local", "joint")
    assert method_steps(method_spec("pix2pixhd", TINY_MODEL)) == ("global", "local", "joint")
    assert method_steps(method_spec("g1", TINY_MODEL)) == ("full",)
    for method in ("pix2pix", "spade", "sean"):
        assert method_steps(method_spec(method, TINY_MODEL)) == ("full",)


def test_networks_follow_the_variant():
    nets = build_networks(method_spec("globallocal", TINY_MODEL), 1, SIZE)
    assert isinstance(nets["dfm"], DFMWeighting)
    assert isinstance(nets["discriminator"], MultiscaleDiscriminator)
    assert build_networks(method_spec("no_dfm", TINY_MODEL), 1, SIZE)["dfm"] is None
    assert build_networks(method_spec("fixed_beta", TINY_MODEL), 1, SIZE)["dfm"] is None
    d3 = build_networks(method_spec("d3", TINY_MODEL), 1, SIZE)
    assert len(d3["discriminator"](torch.zeros(1, 5, SIZE, SIZE))) == 3
    assert len(build_networks(method_spec("g3", TINY_MODEL), 1, SIZE)["generator"].local_enhancers) == 2
    assert len(build_networks(method_spec("g1", TINY_MODEL), 1, SIZE)["generator"].local_enhancers) == 0


def test_scale_weights_conventions():
    feats = [[torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2), torch.randn(2, 1, 2, 2)] for _ in range(2)]
    fixed = scale_weights(method_spec("fixed_beta", TINY_MODEL), None, feats)
    assert fixed.tolist() == [0.75, 0.25]
    plain = scale_weights(method_spec("no_dfm", TINY_MODEL), None, feats)
    assert plain.tolist() == [0.5, 0.5]
    spec = method_spec("globallocal", TINY_MODEL)
    dfm = DFMWeighting(16, n_scales=2, hidden=4)
    w = scale_weights(spec, dfm, feats)
    assert w.shape == (2, 2) and torch.allclose(w.sum(1), torch.ones(2)) and ((w > 0) & (w < 1)).all()


def test_dfm_objective_optimum_is_the_tempered_softmax_of_relative_fm():
    fm = torch.tensor([[1.2, 0.8], [0.5, 1.5]])
    logits = torch.zeros(2, 2, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(2000):
        opt.zero_grad()
        dfm_objective(torch.softmax(logits, 1), fm, 0.25).backward()
        opt.step()
    relative = fm / fm.mean(1, keepdim=True)
    assert torch.allclose(torch.softmax(logits, 1), torch.softmax(relative / 0.25, 1), atol=1e-3)


def test_dfm_net_trains_on_the_discriminator_side_and_beta_stays_interior(tmp_path):
    images, labels = _pairs()
    spec = method_spec("globallocal", TINY_MODEL)
    torch.manual_seed(0)
    start = build_networks(spec, 1, SIZE)["dfm"].state_dict()
    result = train_cgan_step(images, labels, spec, _settings(epochs=3), "joint", tmp_path, progress=False)
    assert any(not torch.equal(v, start[k]) for k, v in result["dfm"].items())
    beta = pd.read_csv(result["loss_csv"])["beta"]
    assert beta.between(0.02, 0.98).all()


def test_lr_schedule_is_constant_then_linear_to_zero():
    values = [lr_factor(s, 10, 5) for s in range(10)]
    assert values[:5] == [1.0] * 5
    assert values[5:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert lr_factor(3, 10, 0) == 1.0


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_all_steps_and_synthesises(tmp_path, method):
    images, labels = _pairs()
    spec = method_spec(method, TINY_MODEL)
    init = None
    for step in method_steps(spec):
        result = train_cgan_step(images, labels, spec, _settings(), step, tmp_path / step, init=init, progress=False)
        losses = pd.read_csv(result["loss_csv"])
        assert len(losses) == result["iterations"] == 4
        assert losses[["loss_d", "loss_g_adv"]].notna().all().all()
        if spec["dfm"] == "dynamic":
            assert losses["beta"].between(0, 1, inclusive="neither").all()
        if spec["fusion"] == "desum" and step != "global" and spec["family"] == "globallocal":
            assert losses["alpha"].between(0, 1, inclusive="neither").all()
        init = result
    torch.save({k: result[k] for k in ("generator", "discriminator", "dfm", "spec", "step", "channels", "image_size")},
               tmp_path / "model.pt")
    generator, loaded_spec = load_cgan(tmp_path / "model.pt")
    out = synthesise(generator, loaded_spec, labels[:3], images[:3], batch_size=2)
    assert out.shape == (3, 1, SIZE, SIZE) and out.dtype == torch.uint8


def test_global_step_trains_only_g1_and_local_step_keeps_g1_frozen(tmp_path):
    images, labels = _pairs()
    spec = method_spec("globallocal", TINY_MODEL)
    first = train_cgan_step(images, labels, spec, _settings(), "global", tmp_path / "g", progress=False)
    torch.manual_seed(0)  # the seed train_cgan_step initialises with
    start = build_networks(spec, 1, SIZE)["generator"].state_dict()
    second = train_cgan_step(images, labels, spec, _settings(), "local", tmp_path / "l", init=first, progress=False)
    for name, value in second["generator"].items():
        if name.startswith("global_generator."):
            assert torch.equal(value, first["generator"][name]), name
    changed_local = [n for n, v in first["generator"].items()
                     if n.startswith("local_enhancers.") and not torch.equal(v, start[n])]
    assert not changed_local  # step 1 leaves G2 at its initialisation
    assert any(not torch.equal(v, first["generator"][n]) for n, v in second["generator"].items()
               if n.startswith("local_enhancers."))


def test_resume_after_interruption_is_bit_exact(tmp_path):
    images, labels = _pairs()
    spec = method_spec("globallocal", TINY_MODEL)
    full = train_cgan_step(images, labels, spec, _settings(epochs=2), "joint", tmp_path / "full", progress=False)
    stopped = train_cgan_step(images, labels, spec, _settings(epochs=2), "joint", tmp_path / "cut", progress=False,
                              stop_after=2)
    assert stopped["stopped_at"] == 2
    resumed = train_cgan_step(images, labels, spec, _settings(epochs=2), "joint", tmp_path / "cut", progress=False)
    assert resumed["resumed_from"] == 2
    for name, value in full["generator"].items():
        assert torch.equal(value, resumed["generator"][name]), name
    assert pd.read_csv(full["loss_csv"]).equals(pd.read_csv(resumed["loss_csv"]))


def test_sean_needs_real_images():
    images, labels = _pairs(2)
    spec = method_spec("sean", TINY_MODEL)
    generator = build_networks(spec, 1, SIZE)["generator"].eval()
    with pytest.raises(ValueError, match="SEAN needs the real images"):
        synthesise(generator, spec, labels)
