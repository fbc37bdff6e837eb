"""Seed 001's conditional GAN family: shapes, published parameter counts, DESUM/DFM, ablation switches."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from lungsynth.networks.cgan import (
    DESUM,
    DFMWeighting,
    GlobalGenerator,
    GlobalLocalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    PatchDiscriminator,
    ResidualBlock,
    SEANGenerator,
    SEANNorm,
    SPADE,
    SPADEGenerator,
    SPADEResBlock,
    StyleEncoder,
    UNetGenerator,
    downsample,
    downsample_labels,
    feature_matching_loss,
    init_weights_,
    region_average,
)
from lungsynth.networks.dcgan import count_parameters

L, C, S = 4, 1, 64  # label channels, image channels, side


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def onehot(batch: int = 2, side: int = S, labels: int = L, absent: tuple[int, ...] = (), seed: int = 0) -> torch.Tensor:
    """Random blocky one-hot label maps ``(B, labels, side, side)``; channels in ``absent`` never occur."""
    g = torch.Generator().manual_seed(seed)
    present = [k for k in range(labels) if k not in absent]
    idx = torch.tensor(present)[torch.randint(len(present), (batch, side // 8, side // 8), generator=g)]
    idx = idx.repeat_interleave(8, 1).repeat_interleave(8, 2)
    return F.one_hot(idx, labels).permute(0, 3, 1, 2).float()


def conv_out(n: int, stride: int, padding: int, kernel: int = 4) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def tiny_global_local(**kw) -> GlobalLocalGenerator:
    args = dict(width=4, n_local=1, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1)
    args.update(kw)
    return GlobalLocalGenerator(L, C, **args)


# --- resampling --------------------------------------------------------------------------------


def test_downsample_helpers():
    x = torch.randn(2, 3, S, S)
    assert downsample(x, 1) is x
    assert downsample(x, 4).shape == (2, 3, 16, 16)
    # count_include_pad=False: a constant image stays constant, borders included
    assert torch.allclose(downsample(torch.ones(1, 1, 8, 8), 2), torch.ones(1, 1, 4, 4))
    m = onehot()
    small = downsample_labels(m, 4)
    assert small.shape == (2, L, 16, 16)
    assert set(small.unique().tolist()) <= {0.0, 1.0} and torch.all(small.sum(1) == 1)
    with pytest.raises(ValueError, match="power of 2"):
        downsample(x, 3)
    with pytest.raises(ValueError, match="divisible"):
        downsample_labels(torch.zeros(1, L, 12, 12), 8)


# --- generators: shapes ------------------------------------------------------------------------


def test_residual_and_global_generator_shapes():
    assert ResidualBlock(6)(torch.randn(2, 6, 8, 8)).shape == (2, 6, 8, 8)
    g = GlobalGenerator(L, C, width=4, n_downsample=3, n_blocks=2)
    m = onehot()
    assert g.features(m).shape == (2, 4, S, S)
    out = g(m)
    assert out.shape == (2, C, S, S) and out.abs().max() <= 1


@pytest.mark.parametrize("n_local", [0, 1, 2])
@pytest.mark.parametrize("fusion", ["desum", "sum"])
def test_global_local_generator_shapes_and_widths(n_local, fusion):
    g = tiny_global_local(n_local=n_local, fusion=fusion, n_downsample_global=3)
    m = onehot()
    out = g(m)
    assert out.shape == (2, C, S, S) and out.abs().max() <= 1
    coarse = g.forward_global(m)
    assert coarse.shape == (2, C, S // 2**n_local, S // 2**n_local) and coarse.abs().max() <= 1
    assert len(g.local_enhancers) == n_local
    assert g.global_generator.width == 4 * 2**n_local
    assert g.global_generator.head[0].in_channels == 4 * 2**n_local
    for k, enhancer in enumerate(g.local_enhancers):  # outermost last, width halves outwards
        assert enhancer.front[0][0].out_channels == 4 * 2 ** (n_local - 1 - k)
        assert (enhancer.head is not None) == (k == n_local - 1)  # pix2pixHD: one image head
    assert len(g.alphas) == (n_local if fusion == "desum" else 0)


def test_inner_enhancer_without_head_refuses_forward_and_checks_shapes():
    e = LocalEnhancer(L, C, width=4, n_blocks=1, output_head=False)
    m = onehot(side=16)
    with pytest.raises(RuntimeError, match="no output head"):
        e(m, torch.zeros(2, 8, 8, 8))
    with pytest.raises(ValueError, match="do not match"):
        e.features(m, torch.zeros(2, 4, 8, 8))


def test_unet_shapes_dropout_and_side_check():
    g = UNetGenerator(L, C, width=4, n_down=6)
    out = g(onehot())
    assert out.shape == (2, C, S, S) and out.abs().max() <= 1
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 1  # n_down - 5
    with pytest.raises(ValueError, match=r"divisible by 2\*\*6 = 64"):
        g(onehot(side=32))
    with pytest.raises(ValueError, match="divisible by 2"):
        UNetGenerator(L, C, width=4, n_down=7)(torch.zeros(1, L, 96, 96))


@pytest.mark.parametrize("n_up", [3, 4, 5])
def test_spade_generator_shapes(n_up):
    g = SPADEGenerator(L, C, width=2, image_size=S, n_up=n_up, hidden=8)
    out = g(onehot())
    assert out.shape == (2, C, S, S) and out.abs().max() <= 1
    assert len(g.upsample_before) == n_up
    assert g.fc.out_channels == 16 * 2 and g.blocks[-1].conv_1.out_channels == 2
    with pytest.raises(ValueError, match="label map must be 64x64"):
        g(onehot(side=32))
    with pytest.raises(ValueError, match="lower n_up"):
        SPADEGenerator(L, C, width=2, image_size=S, n_up=6, hidden=8)


def test_spade_layout_matches_spade_normal():
    """n_up=5: head | up middle_0 middle_1 | up up_0 | up up_1 | up up_2 | up up_3 with 16,16,16,8,4,2,1 x width."""
    g = SPADEGenerator(L, C, width=2, image_size=S, n_up=5, hidden=8)
    assert sorted(g.upsample_before) == [1, 3, 4, 5, 6]
    assert [b.conv_1.out_channels for b in g.blocks] == [32, 32, 32, 16, 8, 4, 2]
    more = SPADEGenerator(L, C, width=2, image_size=128, n_up=6, hidden=8)  # "more": a new size before every block
    assert sorted(more.upsample_before) == [1, 2, 3, 4, 5, 6]


def test_spade_norm_and_resblock():
    spade = SPADE(6, L, hidden=8)
    x, m = torch.randn(2, 6, 16, 16), onehot()
    for conv in (spade.modulation.gamma, spade.modulation.beta):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    assert torch.allclose(spade(x, m), F.instance_norm(x), atol=1e-6)  # gamma = beta = 0
    nn.init.constant_(spade.modulation.beta.bias, 1.0)
    assert torch.allclose(spade(x, m), F.instance_norm(x) + 1, atol=1e-6)
    same, change = SPADEResBlock(6, 6, L, hidden=8), SPADEResBlock(6, 3, L, hidden=8)
    assert not same.learned_shortcut and change.learned_shortcut and change.conv_s.bias is None
    assert change(x, m).shape == (2, 3, 16, 16)
    assert parametrize.is_parametrized(change.conv_0, "weight")
    assert not parametrize.is_parametrized(SPADEResBlock(6, 3, L, hidden=8, spectral=False).conv_0, "weight")


# --- SEAN ----------------------------------------------------------------------------------------


def test_region_average_and_absent_regions_get_zero_codes():
    m = onehot(absent=(2,))
    feats = torch.randn(2, 5, S, S)
    codes = region_average(feats, m)
    assert codes.shape == (2, L, 5)
    assert torch.equal(codes[:, 2], torch.zeros(2, 5))
    expected = feats[0].permute(1, 2, 0)[m[0, 1].bool()].mean(0)
    assert torch.allclose(codes[0, 1], expected, atol=1e-5)

    encoder = StyleEncoder(C, L, style_dim=5, width=4)
    image = torch.rand(2, C, S, S) * 2 - 1
    codes = encoder(image, m)
    assert codes.shape == (2, L, 5) and torch.equal(codes[:, 2], torch.zeros(2, 5))
    assert codes[:, [0, 1, 3]].abs().sum() > 0


def test_sean_generator_styles():
    torch.manual_seed(0)
    g = SEANGenerator(L, C, width=2, image_size=S, n_up=4, hidden=8, style_dim=6, encoder_width=4)
    m = onehot(absent=(3,))
    image = torch.rand(2, C, S, S) * 2 - 1
    codes = g.encode_styles(image, m)
    assert codes.shape == (2, L, 6) and torch.equal(codes[:, 3], torch.zeros(2, 6))
    out = g(m, codes)
    assert out.shape == (2, C, S, S) and out.abs().max() <= 1
    changed = codes.clone()
    changed[:, 1] += 1.0
    assert not torch.allclose(g(m, changed), out)
    with pytest.raises(ValueError, match="style_codes must have shape"):
        g(m, codes[:, :3])
    norm = g.blocks[0].norm_0
    assert isinstance(norm, SEANNorm) and torch.sigmoid(norm.blend_gamma).item() == 0.5


# --- discriminators -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("padding", [1, 2])
def test_patch_discriminator_shapes(norm, padding):
    d = PatchDiscriminator(L + C, width=4, n_layers=3, norm=norm, padding=padding)
    feats = d(torch.randn(2, L + C, S, S))
    assert len(feats) == 5
    side = S
    for i, (f, channels) in enumerate(zip(feats, [4, 8, 16, 32, 1])):
        side = conv_out(side, 2 if i < 3 else 1, padding)
        assert f.shape == (2, channels, side, side)
    biases = [b[0].bias is not None for b in d.blocks]
    assert biases == ([True, False, False, False, True] if norm == "batch" else [True] * 5)


@pytest.mark.parametrize("n_scales", [1, 2, 3])
def test_multiscale_discriminator_scales(n_scales):
    d = MultiscaleDiscriminator(L + C, width=4, n_layers=3, n_scales=n_scales, spectral=True)
    out = d(torch.randn(2, L + C, S, S))
    assert len(out) == n_scales == len(d.discriminators)
    for s, feats in enumerate(out):  # index 0 = full resolution
        side = S // 2**s
        for i, f in enumerate(feats):
            side = conv_out(side, 2 if i < 3 else 1, 2)
            assert f.shape[-2:] == (side, side)
        assert feats[-1].shape[1] == 1
    assert parametrize.is_parametrized(d.discriminators[0].blocks[1][0], "weight")


# --- published parameter counts (constructed on the meta device, never run) --------------------


def test_parameter_counts_match_published_implementations():
    with torch.device("meta"):
        unet = UNetGenerator(3, 3, width=64, n_down=8)
        patch = PatchDiscriminator(6, width=64, n_layers=3, norm="batch", padding=1)
        resnet = GlobalGenerator(3, 3, width=64, n_downsample=2, n_blocks=9)
    # pix2pix prints "[Network G] Total number of parameters : 54.414 M" / "D ... 2.769 M" for
    # unet_256 / basic D with batch norm; the exact layer-by-layer sum is 54,413,955.
    assert count_parameters(unet) == 54_413_955 and round(count_parameters(unet) / 1e6, 3) == 54.414
    assert sum(isinstance(m, nn.Dropout) for m in unet.modules()) == 3
    assert count_parameters(patch) == 2_768_705
    assert count_parameters(resnet) == 11_378_179  # CycleGAN resnet_9blocks (instance norm, biases)


def test_desum_and_dfm_parameter_counts_by_formula():
    c, h = 24, 16
    desum = c * h * 9 + h + 2 * (h * h * 9 + h) + (h * h + h) + (h + 1)
    assert count_parameters(DESUM(c, hidden=h)) == desum
    for n in (1, 2, 3):
        dfm = c * h * 9 + h + h * h * 9 + h + h * n + n
        assert count_parameters(DFMWeighting(c, n_scales=n, hidden=h)) == dfm


# --- DESUM alpha / DFM beta ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 1e4, -1e4])
def test_alpha_and_beta_strictly_inside_unit_interval(scale):
    torch.manual_seed(0)
    desum, dfm = DESUM(6, hidden=8), DFMWeighting(6, n_scales=2, hidden=8)
    for net in (desum, dfm):  # a large last layer drives the logits to saturation
        nn.init.normal_(net.fc.weight if isinstance(net.fc, nn.Linear) else net.fc[-1].weight, 0, 50.0)
    x = scale * torch.randn(4, 6, 8, 8)
    alpha = desum(x)
    assert alpha.shape == (4, 1, 1, 1)
    assert torch.all(alpha > 0) and torch.all(alpha < 1)
    beta = dfm(x)
    assert beta.shape == (4, 2)
    assert torch.all(beta > 0) and torch.all(beta < 1)
    assert torch.allclose(beta.sum(1), torch.ones(4))
    assert torch.equal(DFMWeighting(6, n_scales=1, hidden=8)(x), torch.ones(4, 1))


@pytest.mark.parametrize("source", ["features", "map"])
def test_desum_receives_gradients_through_the_generator(source):
    torch.manual_seed(0)
    g = tiny_global_local(desum_source=source)
    g(onehot()).square().mean().backward()
    desum = g.local_enhancers[0].desum
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in desum.parameters())
    alpha = g.alphas[0]
    assert alpha.shape == (2, 1, 1, 1) and torch.all((alpha > 0) & (alpha < 1)) and not alpha.requires_grad
    copy.deepcopy(g)  # stored alphas are detached: EMA copies after a forward work


def test_dfm_weighted_feature_matching_receives_gradients():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(L + C, width=4, n_layers=2, n_scales=2)
    dfm = DFMWeighting(8, n_scales=2, hidden=8)
    m = onehot()
    fake_image = torch.randn(2, C, S, S, requires_grad=True)
    real = d(torch.cat([m, torch.rand(2, C, S, S)], 1))
    fake = d(torch.cat([m, fake_image], 1))
    weights = dfm(fake[0][1])
    loss = feature_matching_loss(real, fake, weights)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dfm.parameters())
    assert fake_image.grad is not None and fake_image.grad.abs().sum() > 0


def test_feature_matching_loss_convention():
    torch.manual_seed(0)
    real = [[torch.randn(3, 2, 4, 4) for _ in range(3)] for _ in range(2)]
    fake = [[torch.randn(3, 2, 4, 4, requires_grad=True) for _ in range(3)] for _ in range(2)]
    fm = [sum((f - r).abs().mean() for r, f in zip(rs[:-1], fs[:-1])) / 2 for rs, fs in zip(real, fake)]
    plain = feature_matching_loss(real, fake)
    assert torch.allclose(plain, fm[0] + fm[1])  # logits (last entry) excluded, sum over scales
    half = feature_matching_loss(real, fake, torch.tensor([0.5, 0.5]))
    assert torch.allclose(half, 0.5 * plain)
    assert torch.allclose(feature_matching_loss(real, fake, torch.tensor([0.2, 0.8])), 0.2 * fm[0] + 0.8 * fm[1])
    per_sample = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    manual = sum(
        sum((f[b] - r[b]).abs().mean() for r, f in zip(rs[:-1], fs[:-1])) / 2 * per_sample[b, s]
        for s, (rs, fs) in enumerate(zip(real, fake))
        for b in range(3)
    ) / 3
    assert torch.allclose(feature_matching_loss(real, fake, per_sample), manual)
    assert feature_matching_loss(real, [[r.clone() for r in rs] for rs in real]).item() == 0.0
    real_leaf = [[r.requires_grad_() for r in rs] for rs in real]
    feature_matching_loss(real_leaf, fake).backward()
    assert all(r.grad is None for rs in real_leaf for r in rs)  # real features are detached
    with pytest.raises(ValueError, match="weights must have shape"):
        feature_matching_loss(real, fake, torch.ones(3))
    with pytest.raises(ValueError, match="same non-zero number of scales"):
        feature_matching_loss(real, fake[:1])


# --- Table V switches --------------------------------------------------------------------------------


def test_fusion_switches():
    m = onehot()
    plain = tiny_global_local(fusion="sum")
    assert plain.local_enhancers[0].desum is None
    plain(m)
    assert plain.alphas == []

    fixed = tiny_global_local(fusion="fixed", fixed_alpha=0.3)
    assert fixed.local_enhancers[0].desum is None
    assert count_parameters(fixed) == count_parameters(plain)
    fixed(m)
    assert torch.equal(fixed.alphas[0], torch.full((2, 1, 1, 1), 0.3))

    learned = tiny_global_local(fusion="desum")
    assert count_parameters(learned) == count_parameters(plain) + count_parameters(learned.local_enhancers[0].desum)
    # DESUM input: cat(f1, f2) = 2 * (2 * width) channels, or the label map
    assert learned.local_enhancers[0].desum.convs[0].in_channels == 2 * 8
    by_map = tiny_global_local(desum_source="map")
    assert by_map.local_enhancers[0].desum.convs[0].in_channels == L

    with pytest.raises(ValueError, match="fusion must be one of"):
        tiny_global_local(fusion="max")
    with pytest.raises(ValueError, match="desum_source must be one of"):
        tiny_global_local(desum_source="image")


def test_fusion_arithmetic():
    """sum = f1 + f2; fixed alpha a = a f1 + (1 - a) f2; DESUM = alpha f1 + (1 - alpha) f2."""
    x, f1, f2 = onehot(side=16), torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    assert torch.equal(LocalEnhancer(L, C, 4, 1, fusion="sum").fuse(x, f1, f2), f1 + f2)
    assert torch.allclose(LocalEnhancer(L, C, 4, 1, fusion="fixed", fixed_alpha=1.0).fuse(x, f1, f2), f1)
    e = LocalEnhancer(L, C, 4, 1)
    fused = e.fuse(x, f1, f2)
    a = e.desum(torch.cat([f1, f2], 1))
    assert torch.allclose(fused, a * f1 + (1 - a) * f2)
    with pytest.raises(ValueError, match="fixed_alpha"):
        LocalEnhancer(L, C, 4, 1, fusion="fixed", fixed_alpha=1.5)


@pytest.mark.parametrize("n_local", [0, 1, 2])
def test_global_and_local_parameters_partition(n_local):
    g = tiny_global_local(n_local=n_local)
    glob, loc = {id(p) for p in g.global_parameters()}, {id(p) for p in g.local_parameters()}
    assert not glob & loc
    assert glob | loc == {id(p) for p in g.parameters()}
    assert (len(loc) == 0) == (n_local == 0)


# --- practicalities ---------------------------------------------------------------------------------


def _all_models():
    return [
        (tiny_global_local(n_local=2), lambda g, m, x: g(m)),
        (UNetGenerator(L, C, width=4, n_down=6), lambda g, m, x: g(m)),
        (SPADEGenerator(L, C, width=2, image_size=S, n_up=5, hidden=8), lambda g, m, x: g(m)),
        (SEANGenerator(L, C, width=2, image_size=S, n_up=4, hidden=8, style_dim=4, encoder_width=4),
         lambda g, m, x: g(m, g.encode_styles(x, m))),
        (MultiscaleDiscriminator(L + C, width=4, n_scales=2, norm="batch"), lambda d, m, x: d(torch.cat([m, x], 1))[1][-1]),
    ]


def test_channels_last_and_autocast():
    torch.manual_seed(0)
    m = onehot().to(memory_format=torch.channels_last)
    x = (torch.rand(2, C, S, S) * 2 - 1).to(memory_format=torch.channels_last)
    for model, run in _all_models():
        reference = run(model.eval(), m.contiguous(), x.contiguous())
        assert torch.allclose(run(model, m, x), reference, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = run(model, m, x)
        assert out.shape == reference.shape and torch.isfinite(out).all()


def test_seeded_construction_and_forward_are_deterministic():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        g = tiny_global_local()
        init_weights_(g)
        outs.append(g(onehot()))
    assert torch.equal(outs[0], outs[1])


def test_init_weights():
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "g": GlobalGenerator(L, C, width=16, n_downsample=1, n_blocks=1),
        "d": PatchDiscriminator(L + C, width=16, norm="batch"),
        "s": SEANNorm(8, L, style_dim=8, hidden=8),
        "r": SPADEResBlock(8, 4, L, hidden=8),
    })
    spectral = model["r"].conv_0.parametrizations.weight.original.detach().clone()
    init_weights_(model, gain=0.02)
    conv = model["g"].body[1][0]
    assert abs(conv.weight.std().item() - 0.02) < 0.002 and torch.equal(conv.bias, torch.zeros_like(conv.bias))
    bn = model["d"].blocks[1][1]
    assert abs(bn.weight.mean().item() - 1) < 0.02 and bn.weight.std() > 0 and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    proj = model["s"].style_projection
    assert abs(proj.weight.std().item() - 0.02) < 0.003 and torch.equal(proj.bias, torch.zeros_like(proj.bias))
    assert torch.equal(model["r"].conv_0.parametrizations.weight.original, spectral)  # parametrized: skipped
    assert model["s"].blend_gamma.item() == 0.0
