"""Similarity metrics against reference implementations, and the all-pairs engine.

Every agreement test runs on synthetic smooth images (always) and on real
lung-ultrasound frames from ``../shared/realdata/lus-pocus/mat`` (skipped when absent).
References: pytorch-msssim, torchmetrics, scikit-image, sewar.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungsynth.metrics import similarity as sim

SIZE = 192  # MS-SSIM with 5 scales needs > 160 px (pytorch-msssim's check)


def _smooth_uint8(rng: np.random.Generator, n: int, size: int = SIZE, sigma: float = 2.0) -> np.ndarray:
    imgs = np.stack([ndimage.gaussian_filter(rng.random((size, size)), sigma) for _ in range(n)])
    lo, hi = imgs.min(axis=(1, 2), keepdims=True), imgs.max(axis=(1, 2), keepdims=True)
    return np.round((imgs - lo) / (hi - lo) * 255).astype(np.uint8)


def _synthetic_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """6 uint8 pairs (B, 1, SIZE, SIZE): 3 similar (x + noise) and 3 unrelated."""
    rng = np.random.default_rng(7)
    x = _smooth_uint8(rng, 6)
    y = _smooth_uint8(rng, 6)
    noisy = np.clip(x[:3].astype(float) + rng.normal(0, 12, x[:3].shape), 0, 255)
    y[:3] = ndimage.gaussian_filter(noisy, (0, 0.7, 0.7)).round().astype(np.uint8)
    return torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]


def _real_pairs(realdata_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """6 uint8 pairs of grayscale LUS frames resized to SIZE: 3 within a video, 3 across videos."""
    from scipy.io import loadmat

    files = sorted((realdata_dir / "lus-pocus" / "mat").glob("*.mat"))
    if len(files) < 2:
        pytest.skip(f"no lus-pocus .mat files under {realdata_dir}")
    videos = []
    for f in files[:3]:
        arr = next(v for k, v in loadmat(f).items() if not k.startswith("__"))
        frames = arr[:, :, 0, :] if arr.ndim == 4 else arr  # H x W x 3 x N or H x W x N
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(frames, -1, 0))).float()[:, None]
        t = torch.nn.functional.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        videos.append(t.round().clamp(0, 255).to(torch.uint8))
    v0, v1 = videos[0], videos[1 % len(videos)]
    x = torch.cat([v0[[0, 5, 10]], v0[[0, 3, 6]]])
    y = torch.cat([v0[[1, 7, 14]], v1[[0, 3, 6]]])
    return x, y


@pytest.fixture(scope="module", params=["synthetic", "real"])
def pairs(request) -> tuple[torch.Tensor, torch.Tensor]:
    if request.param == "synthetic":
        return _synthetic_pairs()
    return _real_pairs(request.getfixturevalue("realdata_dir"))


def _np(t: torch.Tensor, i: int) -> np.ndarray:
    return t[i, 0].numpy()


# ----------------------------------------------------------------------------- SSIM family


def test_ssim_matches_pytorch_msssim_torchmetrics_skimage(pairs):
    import pytorch_msssim
    from skimage.metrics import structural_similarity
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = pairs
    ours = sim.ssim(x, y)
    assert ours.shape == (len(x),) and ours.dtype == torch.float64
    ref = pytorch_msssim.ssim(x.float(), y.float(), data_range=255, size_average=False)
    torch.testing.assert_close(ours, ref.double(), atol=1e-4, rtol=0)
    # torchmetrics 1.9 averages the SSIM map over the reflect-padded full image (no 'valid' crop):
    # a documented border difference, small but well above 1e-4.
    tm = structural_similarity_index_measure(y.double(), x.double(), data_range=255.0, reduction="none")
    assert (ours - tm).abs().max() < 0.05
    # skimage pads and crops (win-1)/2 = 5 px before averaging: the 'valid' region, same index.
    sk = [
        structural_similarity(_np(x, i), _np(y, i), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)
        for i in range(len(x))
    ]
    np.testing.assert_allclose(ours.numpy(), sk, atol=1e-6)


def test_ssim_sewar_gaussian_agrees_and_default_uniform_differs(pairs):
    from sewar.full_ref import ssim as sewar_ssim
    from sewar.utils import Filter

    x, y = pairs
    ours = sim.ssim(x, y).numpy()
    gauss = dict(fltr=Filter.GAUSSIAN, sigma=1.5, ws=11)
    sew_g = [sewar_ssim(_np(x, i), _np(y, i), fltr_specs=gauss, mode="valid")[0] for i in range(len(x))]
    np.testing.assert_allclose(ours, sew_g, atol=1e-8)
    # sewar's default is an 11x11 uniform window: a different (here higher) index.
    sew_u = np.array([sewar_ssim(_np(x, i), _np(y, i))[0] for i in range(len(x))])
    assert np.abs(sew_u - ours).max() > 1e-3


def test_ms_ssim_matches_pytorch_msssim_and_torchmetrics(pairs):
    import pytorch_msssim
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_msssim

    x, y = pairs
    ours = sim.ms_ssim(x, y)
    assert ((ours >= 0) & (ours <= 1)).all()
    ref = pytorch_msssim.ms_ssim(x.float(), y.float(), data_range=255, size_average=False)
    torch.testing.assert_close(ours, ref.double(), atol=1e-4, rtol=0)
    # torchmetrics 1.9 keeps the reflect-padded border in its SSIM maps: close for similar pairs
    # (the first three), not for dissimilar ones (e.g. 0 here vs 0.07 there).
    tm = tm_msssim(y[:3].double(), x[:3].double(), data_range=255.0, reduction="none")
    torch.testing.assert_close(ours[:3], tm, atol=2e-3, rtol=0)


def test_ms_ssim_sewar_goes_negative_where_we_clamp():
    """Documented difference: sewar keeps negative contrast terms (real part of a complex power)."""
    from sewar.full_ref import msssim as sewar_msssim

    x, _ = _synthetic_pairs()
    a = x[0, 0].numpy()
    b = 255 - a  # inverted: every contrast-structure term is negative
    assert float(sewar_msssim(a, b)) < -0.5
    assert float(sim.ms_ssim(a[None, None], b[None, None])) == 0.0


def test_ms_ssim_near_sewar_for_similar_images():
    from sewar.full_ref import msssim as sewar_msssim

    x, y = _synthetic_pairs()
    ours = sim.ms_ssim(x[:3], y[:3]).numpy()
    sew = np.array([float(sewar_msssim(_np(x, i), _np(y, i))) for i in range(3)])
    # sewar pools with uniform_filter(., 2)[::2] (a one-pixel shift against avg_pool): close, not equal.
    np.testing.assert_allclose(ours, sew, atol=0.02)


def test_uint8_and_float_inputs_agree():
    x, y = _synthetic_pairs()
    xf, yf = x.double() / 255, y.double() / 255
    for fn in (sim.ssim, sim.ms_ssim, sim.psnr, sim.psnr_b, sim.rase, sim.sam, sim.scc):
        torch.testing.assert_close(fn(x, y), fn(xf, yf), atol=1e-9, rtol=1e-9, msg=fn.__name__)
    torch.testing.assert_close(sim.rmse(x, y) / 255, sim.rmse(xf, yf))
    with pytest.raises(TypeError):
        sim.psnr(x, yf)


def test_ms_ssim_small_images_need_fewer_scales():
    rng = np.random.default_rng(0)
    a, b = _smooth_uint8(rng, 2, size=64)[:, None]
    with pytest.raises(ValueError, match="at least 161"):
        sim.ms_ssim(a[None], b[None])
    w = sim.ms_ssim_weights(3)
    assert sum(w) == pytest.approx(1)
    v = sim.ms_ssim(a[None], b[None], weights=w)
    m = sim.pairwise("ms_ssim", np.stack([a, b]), weights=w)
    assert float(m[0, 1]) == pytest.approx(float(v[0]), abs=1e-5)


# ----------------------------------------------------------------------------- PSNR, PSNR-B, RMSE


def test_psnr_rmse_match_references(pairs):
    from sewar.full_ref import psnr as sewar_psnr
    from sewar.full_ref import rmse as sewar_rmse
    from skimage.metrics import peak_signal_noise_ratio
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

    x, y = pairs
    ours = sim.psnr(x, y)
    sk = [peak_signal_noise_ratio(_np(x, i), _np(y, i), data_range=255) for i in range(len(x))]
    np.testing.assert_allclose(ours.numpy(), sk, rtol=1e-10)
    np.testing.assert_allclose(ours.numpy(), [sewar_psnr(_np(x, i), _np(y, i)) for i in range(len(x))], rtol=1e-10)
    tm = tm_psnr(y.double(), x.double(), data_range=255.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(ours, tm)
    r = sim.rmse(x, y).numpy()
    np.testing.assert_allclose(r, [sewar_rmse(_np(x, i), _np(y, i)) for i in range(len(x))], rtol=1e-10)
    assert torch.isinf(sim.psnr(x[:1], x[:1])).all()


def test_psnr_b_matches_sewar_and_torchmetrics(pairs):
    from sewar.full_ref import psnrb
    from torchmetrics.functional.image import peak_signal_noise_ratio_with_blocked_effect as tm_psnrb

    x, y = pairs
    ours = sim.psnr_b(x, y).numpy()
    np.testing.assert_allclose(ours, [psnrb(_np(x, i), _np(y, i)) for i in range(len(x))], rtol=1e-9)
    tm = [float(tm_psnrb(y[i : i + 1].double(), x[i : i + 1].double(), data_range=255.0)) for i in range(len(x))]
    np.testing.assert_allclose(ours, tm, rtol=1e-9)


def test_psnr_b_penalises_blocking_of_the_test_image():
    x, _ = _synthetic_pairs()
    x = x[:1].double()
    blocky = torch.nn.functional.avg_pool2d(x, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)
    assert float(sim.psnr_b(x, blocky, data_range=255)) < float(sim.psnr(x, blocky, data_range=255)) - 0.1
    # order matters: the blocking factor is the test image's (second argument)
    assert float(sim.psnr_b(blocky, x, data_range=255)) != float(sim.psnr_b(x, blocky, data_range=255))


# ----------------------------------------------------------------------------- RASE, SAM, SCC


def test_rase_matches_torchmetrics_and_sewar_scale():
    from sewar.full_ref import rase as sewar_rase
    from torchmetrics.functional.image import relative_average_spectral_error

    x, y = _synthetic_pairs()
    x = x.double() + 1  # no zero local means: torchmetrics has no guard for them
    y = y.double() + 1
    ours = sim.rase(x, y, data_range=256)
    tm = [float(relative_average_spectral_error(y[i : i + 1], x[i : i + 1])) for i in range(len(x))]
    np.testing.assert_allclose(ours.numpy(), tm, rtol=1e-9)
    # sewar >= 0.4.9 (installed here: 0.4.10) reports Wald's percentage, 64x smaller.
    sew = [sewar_rase(_np(x, i), _np(y, i)) for i in range(len(x))]
    np.testing.assert_allclose(sim.rase(x, y, data_range=256, convention="wald").numpy(), sew, rtol=1e-9)
    np.testing.assert_allclose(ours.numpy() / 64, sew, rtol=1e-9)
    const = sim.rase(np.full((1, 1, 32, 32), 100, np.uint8), np.full((1, 1, 32, 32), 110, np.uint8), convention="wald")
    assert float(const) == pytest.approx(10.0)


def test_rase_zero_reference_regions_follow_sewar(pairs):
    from sewar.full_ref import rase as sewar_rase

    x, y = pairs  # real LUS frames have black borders (local mean 0): sewar's guard
    sew = [sewar_rase(_np(x, i), _np(y, i)) for i in range(len(x))]
    np.testing.assert_allclose(sim.rase(x, y, convention="wald").numpy(), sew, rtol=1e-9)


def test_sam_matches_references():
    from sewar.full_ref import sam as sewar_sam
    from torchmetrics.functional.image import spectral_angle_mapper

    x, y = _synthetic_pairs()
    x, y = x.double() + 1, y.double() + 1
    ours = sim.sam(x, y, data_range=256)
    # grayscale: the angle between the flattened images = SAM of one pixel with H*W bands
    tm = [float(spectral_angle_mapper(y[i].reshape(1, -1, 1, 1), x[i].reshape(1, -1, 1, 1))) for i in range(len(x))]
    np.testing.assert_allclose(ours.numpy(), tm, rtol=1e-9)
    sew = [sewar_sam(x[i].reshape(1, 1, -1).numpy(), y[i].reshape(1, 1, -1).numpy()) for i in range(len(x))]
    np.testing.assert_allclose(ours.numpy(), sew, rtol=1e-9)
    assert float(sim.sam(x[:1], 3 * x[:1], data_range=256)) == pytest.approx(0, abs=1e-6)
    # C > 1: mean per-pixel spectral angle
    x3 = torch.cat([x[:2], y[:2], x[2:4]], 1)
    y3 = torch.cat([y[2:4], x[4:6], y[4:6]], 1)
    ours3 = sim.sam(x3, y3, data_range=256)
    torch.testing.assert_close(ours3, spectral_angle_mapper(y3, x3, reduction="none").mean((1, 2)))
    sew3 = [sewar_sam(x3[i].permute(1, 2, 0).numpy(), y3[i].permute(1, 2, 0).numpy()) for i in range(2)]
    np.testing.assert_allclose(ours3.numpy(), sew3, rtol=1e-9)


def test_scc_matches_torchmetrics_and_sewar(pairs):
    from sewar.full_ref import scc as sewar_scc
    from torchmetrics.functional.image import spatial_correlation_coefficient

    x, y = pairs
    ours = sim.scc(x, y)
    sew = [sewar_scc(_np(x, i), _np(y, i)) for i in range(len(x))]
    np.testing.assert_allclose(ours.numpy(), sew, atol=1e-9)
    tm = spatial_correlation_coefficient(y.double(), x.double(), reduction="none")  # float32 inside
    torch.testing.assert_close(ours, tm.double(), atol=1e-4, rtol=0)
    # identical images: 1 wherever the high-pass image varies (black LUS borders count as 0)
    assert 0.9 < float(sim.scc(x[:1], x[:1])) <= 1 + 1e-12


# ----------------------------------------------------------------------------- all-pairs engine and studies


def _expand_pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, m = len(a), len(b)
    return a.repeat_interleave(m, 0), b.repeat(n, 1, 1, 1)


def test_pairwise_ms_ssim_and_ssim_match_direct_and_pytorch_msssim(pairs):
    import pytorch_msssim

    x, y = pairs
    a, b = x[:4], y
    ea, eb = _expand_pairs(a, b)
    for name in ("ms_ssim", "ssim"):
        mat = sim.pairwise(name, a, b, batch_size=9)
        assert mat.shape == (4, len(b)) and mat.dtype == torch.float64
        direct = getattr(sim, name)(ea, eb).view(4, len(b))
        torch.testing.assert_close(mat, direct, atol=1e-5, rtol=0)
        ref_fn = getattr(pytorch_msssim, name)
        ref = ref_fn(ea.float(), eb.float(), data_range=255, size_average=False).view(4, len(b))
        torch.testing.assert_close(mat, ref.double(), atol=1e-4, rtol=0)


def test_pairwise_self_is_symmetric_with_nan_diagonal():
    x, y = _synthetic_pairs()
    imgs = torch.cat([x, y])  # 12 images: several stats blocks and row/column blocks
    mat = sim.pairwise("ms_ssim", imgs, batch_size=16, stats_block=5)
    assert torch.isnan(mat.diagonal()).all()
    off = ~torch.eye(12, dtype=torch.bool)
    torch.testing.assert_close(mat[off], mat.T[off])
    i, j = torch.triu_indices(12, 12, 1)
    torch.testing.assert_close(mat[i, j], sim.ms_ssim(imgs[i], imgs[j]), atol=1e-5, rtol=0)
    gen = sim.pairwise("psnr", imgs)
    torch.testing.assert_close(gen[i, j], sim.psnr(imgs[i], imgs[j]))
    assert torch.isnan(gen.diagonal()).all()


def test_pairwise_multichannel_ms_ssim_is_channel_mean():
    rng = np.random.default_rng(5)
    a = torch.from_numpy(_smooth_uint8(rng, 6)).view(2, 3, SIZE, SIZE)
    b = torch.from_numpy(_smooth_uint8(rng, 9)).view(3, 3, SIZE, SIZE)
    mat = sim.pairwise("ms_ssim", a, b)
    ea, eb = _expand_pairs(a, b)
    torch.testing.assert_close(mat, sim.ms_ssim(ea, eb).view(2, 3), atol=1e-5, rtol=0)


def test_compare_sets_orientation_and_studies():
    x, y = _synthetic_pairs()
    gen, real = y[:4], x
    out = sim.compare_sets(gen, real, metrics=("ms_ssim", "psnr_b", "sam"))
    assert set(out) == {"ms_ssim", "psnr_b", "sam"}
    assert all(v.shape == (4, 6) for v in out.values())
    # reference = real[j], test = generated[i]
    assert float(out["psnr_b"][1, 2]) == pytest.approx(float(sim.psnr_b(real[2:3], gen[1:2])))
    assert float(out["ms_ssim"][0, 0]) == pytest.approx(float(sim.ms_ssim(real[:1], gen[:1])), abs=1e-5)

    div = sim.diversity(x)
    assert div.shape == (15,)

    train = torch.cat([x[3:], y[:3]])  # y[:3] are the generated images 0..2 themselves
    nn = sim.nearest_neighbours(gen, train)
    assert list(nn.columns) == ["generated_index", "train_index", "score", "near_copy"]
    assert nn["train_index"].tolist()[:3] == [3, 4, 5]
    assert nn["near_copy"].tolist()[:3] == [True, True, True]
    assert not nn["near_copy"].iloc[3]
    nn_d = sim.nearest_neighbours(gen, train, metric="rmse", threshold=1.0)
    assert nn_d["train_index"].tolist()[:3] == [3, 4, 5] and nn_d["score"].iloc[0] == 0


def test_summarise_ignores_nan_and_uses_t_interval():
    s = sim.summarise(torch.tensor([1.0, 2.0, 3.0, float("nan")]))
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert s["ci_low"] == pytest.approx(2 - half) and s["ci_high"] == pytest.approx(2 + half)


def test_pairwise_rejects_unknown_metric_and_shape_mismatch():
    x, y = _synthetic_pairs()
    with pytest.raises(ValueError, match="unknown metric"):
        sim.pairwise("lpips", x)
    with pytest.raises(ValueError):
        sim.pairwise("psnr", x, y[:, :, :100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.pairwise("ssim", x[:2], y[:2])
