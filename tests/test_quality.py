"""Tests of lungsynth.metrics.quality: FID / KID against closed forms and torchmetrics, masked pixel metrics,
the domain feature extractor, Inception loading and the quality table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lungsynth.methods.cgan import quality as q
from lungsynth.metrics import distribution as dist
from lungsynth.metrics import masked
from lungsynth.networks import feature_extractor as fx_net
from lungsynth.tasks import feature_extractor as fx
from lungsynth.metrics import similarity as sim
from lungsynth.errors import InputDataError


def synthetic_ct(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dark background, two lung ellipses (label 1, gray ~70) with ground-glass (2) / consolidation (3) disks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    images = np.empty((n, 1, size, size), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    levels = np.array([20.0, 70.0, 140.0, 210.0])
    for i in range(n):
        lab = labels[i]
        for cx in (0.3, 0.7):
            cxp, cyp = cx * size + rng.normal(0, 1), size / 2 + rng.normal(0, 1)
            a, b = size * rng.uniform(0.14, 0.2), size * rng.uniform(0.28, 0.38)
            lab[((xx - cxp) / a) ** 2 + ((yy - cyp) / b) ** 2 <= 1] = 1
        lung_y, lung_x = np.nonzero(lab)
        for _ in range(rng.integers(0, 3)):
            k = rng.integers(len(lung_y))
            r = rng.uniform(0.06, 0.14) * size
            disk = ((xx - lung_x[k]) ** 2 + (yy - lung_y[k]) ** 2 <= r * r) & (lab >= 1)
            lab[disk] = rng.integers(2, 4)
        img = levels[lab] + rng.normal(0, 8, (size, size))
        images[i, 0] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return images, labels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return synthetic_ct(240, seed=1)


@pytest.fixture(scope="module")
def trained(data):
    images, labels = data
    model, history = fx.train_feature_extractor(images[:160], labels[:160], width=8, epochs=8, batch_size=16,
                                               lr=3e-3, seed=0, progress=False)
    return model, history


def _rand_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------- FID


def test_frechet_distance_closed_form_diagonal():
    rng = np.random.default_rng(0)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert dist.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    assert dist.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_full_covariance_against_eigen_formula():
    rng = np.random.default_rng(1)
    d = 20
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _rand_spd(rng, d), _rand_spd(rng, d)
    # Tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), a symmetric PSD matrix
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(w)) @ v.T
    tr = np.sqrt(np.linalg.eigvalsh(r @ s2 @ r)).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert dist.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n, d", [(80, 16), (30, 64)])  # N > D and singular covariances (N < D)
def test_fid_equals_frechet_distance_of_moments(n, d):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, d))
    y = 1.3 * rng.normal(size=(n + 5, d)) + 0.2
    ref = dist.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert dist.fid(x, y) == pytest.approx(ref, rel=1e-6)
    assert abs(dist.fid(x, x)) < 1e-9 * np.trace(np.cov(x, rowvar=False))
    assert dist.fid(x, y) > 1.0


class _Identity(torch.nn.Module):
    """A torchmetrics 'feature extractor' that passes precomputed features through."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.num_features = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_fid_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(3)
    d = 24
    x = rng.normal(size=(100, d))
    y = rng.normal(size=(90, d)) * rng.uniform(0.5, 1.5, d) + 0.3
    metric = FrechetInceptionDistance(feature=_Identity(d))
    metric.update(torch.tensor(x), real=True)
    metric.update(torch.tensor(y), real=False)
    assert dist.fid(x, y) == pytest.approx(float(metric.compute()), rel=1e-8)


# ----------------------------------------------------------------------------- KID


def _mmd2_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 written out term by term (O(n^2) loops over pairs)."""
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1) ** 3

    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")
def test_kid_full_set_matches_torchmetrics_and_direct_formula():
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(4)
    d, n = 10, 40
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) + 0.4
    mean, std = dist.kid(x, y, subset_size=n, n_subsets=3)
    assert std == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set
    metric = KernelInceptionDistance(feature=_Identity(d), subset_size=n, subsets=1)
    metric.update(torch.tensor(x), real=True)
    metric.update(torch.tensor(y), real=False)
    assert mean == pytest.approx(float(metric.compute()[0]), rel=1e-10)
    assert mean == pytest.approx(_mmd2_direct(x, y), rel=1e-10)
    # subset_size is clamped to min(N_real, N_fake)
    assert dist.kid(x, y, subset_size=1000, n_subsets=3)[0] == pytest.approx(mean, rel=1e-12)


def test_kid_near_zero_for_same_distribution_positive_for_shift():
    rng = np.random.default_rng(5)
    d = 32
    x, y = rng.normal(size=(300, d)), rng.normal(size=(300, d))
    shifted = rng.normal(size=(300, d)) + 0.3
    same, same_std = dist.kid(x, y, subset_size=100, n_subsets=50)
    diff, _ = dist.kid(x, shifted, subset_size=100, n_subsets=50)
    assert diff > 0.05
    assert abs(same) < 0.1 * diff
    assert abs(same) < 3 * same_std
    assert dist.kid(x, y, seed=1) != dist.kid(x, y, seed=2)
    assert dist.kid(x, y, seed=1) == dist.kid(x, y, seed=1)


def test_bootstrap_intervals():
    rng = np.random.default_rng(6)
    d = 16
    x = rng.normal(size=(120, d))
    y = rng.normal(size=(120, d)) + 0.3
    f = dist.fid_interval(x, y, n_bootstrap=30, seed=0, paired=True)
    assert f["value"] == pytest.approx(dist.fid(x, y))
    assert f["low"] < f["high"] and f["value"] > 0
    assert f["low"] <= f["value"] <= f["high"]  # basic bootstrap: the resampling bias is removed
    assert dist.fid_interval(x, y, n_bootstrap=30, seed=0, paired=True) == f  # deterministic
    k = dist.kid_interval(x, y, subset_size=50, n_subsets=20, n_bootstrap=30, seed=0)
    assert k["value"] == pytest.approx(dist.kid(x, y, subset_size=50, n_subsets=20)[0])
    assert k["low"] < k["value"] < k["high"]  # duplicates do not bias the KID replicates
    same = dist.kid_interval(x, rng.normal(size=(100, d)), subset_size=50, n_subsets=20, n_bootstrap=30)
    assert same["low"] < 0 < same["high"]
    # fakes close to their real partners: resampling pairs together would push every replicate below the value
    close = dist.kid_interval(x, x + 0.05 * rng.normal(size=x.shape), subset_size=50, n_subsets=20, n_bootstrap=30)
    assert close["low"] < close["value"] < close["high"]
    with pytest.raises(ValueError, match="paired"):
        dist.fid_interval(x, y[:50], paired=True)
    empty = dist.fid_interval(x, y, n_bootstrap=0)
    assert math.isnan(empty["low"]) and math.isnan(empty["high"])


# ----------------------------------------------------------------------------- masked pixel metrics


def test_masked_metrics_equal_unmasked_with_full_mask():
    rng = np.random.default_rng(7)
    for shape in [(5, 1, 40, 37), (3, 3, 32, 32)]:
        x = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
        y = torch.from_numpy(np.clip(x.numpy() + rng.normal(0, 20, shape), 0, 255).astype(np.uint8))
        full = torch.ones(shape[0], *shape[2:], dtype=torch.bool)
        assert torch.equal(masked.masked_psnr(x, y, full), sim.psnr(x, y))
        assert torch.equal(masked.masked_rmse(x, y, full), sim.rmse(x, y))
        assert torch.equal(masked.masked_ssim(x, y, full), sim.ssim(x, y))
        assert masked.masked_ssim(x, y, full).dtype == torch.float64


def test_ssim_map_mean_is_ssim():
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.integers(0, 256, (2, 1, 30, 33), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 256, (2, 1, 30, 33), dtype=np.uint8))
    smap = sim.ssim_map(x, y)
    assert smap.shape == (2, 1, 20, 23)
    assert torch.equal(smap.mean((1, 2, 3)), sim.ssim(x, y))


def test_masked_psnr_rmse_hand_computed():
    x = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    y = x.clone()
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True  # 4 pixels
    y[0, 0, 3, 3] = 200  # error only outside the mask -> identical region
    y[1, 0, 0, 0] = 10  # one error of 10 inside: MSE = 100 / 4 = 25
    mask[2] = False  # empty region
    psnr = masked.masked_psnr(x, y, mask)
    rmse = masked.masked_rmse(x, y, mask)
    assert psnr[0] == math.inf and rmse[0] == 0.0
    assert psnr[1].item() == pytest.approx(10 * math.log10(255**2 / 25))
    assert rmse[1].item() == pytest.approx(5.0)
    assert math.isnan(psnr[2]) and math.isnan(rmse[2])


def test_masked_ssim_crops_mask_by_half_window():
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.integers(0, 256, (2, 1, 32, 32), dtype=np.uint8))
    y = torch.from_numpy(rng.integers(0, 256, (2, 1, 32, 32), dtype=np.uint8))
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[0, 10:20, 8:16] = True
    mask[1, :5, :] = True  # only within 5 px of the border: no window centre -> NaN
    value = masked.masked_ssim(x, y, mask)
    expected = sim.ssim_map(x, y)[0, 0, 5:15, 3:11].mean()
    assert value[0].item() == pytest.approx(expected.item(), rel=1e-12)
    assert math.isnan(value[1])


# ----------------------------------------------------------------------------- feature extractors


def test_domain_extractor_shapes_and_determinism():
    model = fx_net.DomainFeatureExtractor(width=4).eval()
    assert model.feature_dim == 64
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    assert model(x).shape == (3, 4, 3, 3)
    f = model.features(x)
    assert f.shape == (3, 64)
    assert torch.equal(model.features(x), f)
    # GroupNorm: an image's features do not depend on its batch
    assert torch.allclose(model.features(x[:1]), f[:1], atol=1e-6)


def test_train_feature_extractor_learns_and_round_trips(trained, data, tmp_path):
    model, history = trained
    assert list(history.columns) == ["epoch", "loss", "cell_accuracy", "balanced_accuracy"]
    assert len(history) == 8
    assert history["loss"].iloc[-1] < 0.6 * history["loss"].iloc[0]
    assert history["balanced_accuracy"].iloc[-1] > history["balanced_accuracy"].iloc[0]
    assert not model.training
    path = tmp_path / "features.pt"
    fx.save_feature_extractor(model, path)
    loaded = fx.load_feature_extractor(path)
    images = data[0][160:]
    a = fx.extract_features(model, images, batch_size=32)
    b = fx.extract_features(loaded, images, batch_size=32)
    assert a.dtype == np.float64 and a.shape == (80, 128)
    assert np.array_equal(a, b)
    c = fx.extract_features(loaded, images, batch_size=7)
    assert np.allclose(a, c, rtol=1e-5, atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputDataError, match="bad.pt"):
        fx.load_feature_extractor(tmp_path / "bad.pt")


def test_train_feature_extractor_is_deterministic(data):
    images, labels = data[0][:48], data[1][:48]
    runs = [fx.train_feature_extractor(images, labels, width=4, epochs=1, batch_size=16, seed=3, progress=False)
            for _ in range(2)]
    for (k, a), b in zip(runs[0][0].state_dict().items(), runs[1][0].state_dict().values()):
        assert torch.equal(a, b), k
    other, _ = fx.train_feature_extractor(images, labels, width=4, epochs=1, batch_size=16, seed=4, progress=False)
    assert not torch.equal(other.head.weight, runs[0][0].head.weight)


def test_inception_features_from_random_weights(tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)
    del net
    model = fx_net.InceptionFeatures(path)
    assert model.feature_dim == 2048
    model.train()
    assert not model.net.training
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 64, 64), dtype=np.uint8)
    f = fx.extract_features(model, images)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1], rtol=1e-3, atol=0)


def test_inception_bad_files_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt_weights.pth"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputDataError, match="corrupt_weights.pth") as err:
        fx_net.InceptionFeatures(corrupt)
    assert "torchvision" in str(err.value)
    wrong = tmp_path / "wrong_keys.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InputDataError, match="wrong_keys.pth.*missing"):
        fx_net.InceptionFeatures(wrong)
    with pytest.raises(InputDataError, match="not found"):
        fx_net.InceptionFeatures(tmp_path / "absent.pth")


# ----------------------------------------------------------------------------- table


def test_quality_table_structure_without_extractor(data):
    images, labels = data[0][:20], data[1][:20]
    fake = np.clip(images.astype(int) + 3, 0, 255).astype(np.uint8)
    table = q.quality_table(images, fake, labels, None)
    assert list(table.columns) == ["region", "metric", "value", "low", "high", "n"]
    assert list(zip(table.region, table.metric)) == [(r, m) for r in q.REGIONS for m in q.QUALITY_METRICS]
    fid_kid = table[table.metric.isin(["FID", "KID"])]
    assert fid_kid[["value", "low", "high"]].isna().all().all() and (fid_kid.n == 0).all()
    rmse = table.set_index(["region", "metric"]).loc[("complete", "RMSE")]
    assert rmse.value == pytest.approx(3.0, abs=0.1) and rmse.n == 20
    lung_psnr = table.set_index(["region", "metric"]).loc[("lung", "PSNR")]
    assert lung_psnr.low <= lung_psnr.value <= lung_psnr.high


def test_quality_table_ranks_better_fake_higher(trained, data):
    model, _ = trained
    rng = np.random.default_rng(10)
    real, labels = data[0][160:], data[1][160:]
    good = np.clip(real + rng.normal(0, 6, real.shape), 0, 255).astype(np.uint8)
    bad = rng.integers(0, 256, real.shape, dtype=np.uint8)
    kw = dict(kid_subset_size=40, kid_subsets=20, n_bootstrap=10, seed=0)
    tg = q.quality_table(real, good, labels, model, **kw).set_index(["region", "metric"])
    tb = q.quality_table(real, bad, labels, model, **kw).set_index(["region", "metric"])
    for region in q.REGIONS:
        for metric in ("FID", "KID", "RMSE"):
            assert tg.loc[(region, metric), "value"] < tb.loc[(region, metric), "value"], (region, metric)
        for metric in ("PSNR", "SSIM"):
            assert tg.loc[(region, metric), "value"] > tb.loc[(region, metric), "value"], (region, metric)
        assert tg.loc[(region, "FID"), "n"] == len(real)
        # the good fake is near the real set: its FID interval lies below the bad one's
        assert tg.loc[(region, "FID"), "high"] < tb.loc[(region, "FID"), "low"]


def test_quality_table_lung_region_ignores_pixels_outside_the_lung(trained, data):
    model, _ = trained
    real, labels = data[0][160:200], data[1][160:200]
    rng = np.random.default_rng(11)
    outside = labels[:, None] == 0
    fake = np.where(outside, rng.integers(0, 256, real.shape, dtype=np.uint8), real)
    table = q.quality_table(real, fake, labels, model, kid_subset_size=20, kid_subsets=5, n_bootstrap=5)
    t = table.set_index(["region", "metric"])["value"]
    assert t[("complete", "FID")] > 1e-3 and t[("complete", "RMSE")] > 10
    assert t[("lung", "FID")] == pytest.approx(0.0, abs=1e-9)
    assert t[("lung", "RMSE")] == 0.0
    # SSIM windows centred in the lung still see up to 5 px of the changed surroundings
    assert t[("complete", "SSIM")] < t[("lung", "SSIM")] < 1.0
    assert t[("lung", "PSNR")] == math.inf
