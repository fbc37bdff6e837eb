"""Distribution distances between two feature sets: FID and KID, with bootstrap intervals.

Features are float arrays ``(N, D)``, one row per image, from any extractor (see
:mod:`lungsynth.networks.feature_extractor`); the two sets must share ``D``. Values depend on the
extractor and on N: compare only values computed with the same extractor and set sizes.

==========  =====================================================================
FID         ``||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` with means and
            covariances (ddof=1) of the feature sets, float64. :func:`frechet_distance`
            takes moments and uses ``scipy.linalg.sqrtm`` (pytorch-fid: eps*I added to
            both covariances when the root is not finite, or, here also, when its
            diagonal has an imaginary part above 1e-3 x its largest real entry; smaller
            imaginary parts are dropped). :func:`fid` takes features and uses the exact
            identity ``Tr (S_r S_f)^(1/2) = ||A B^T||_* / sqrt((n-1)(m-1))`` (A, B the
            centred feature matrices, ``||.||_*`` the nuclear norm): real by
            construction, no eps, several times faster than sqrtm (an N x N SVD when
            N < D, else D x D), equal to :func:`frechet_distance` within rounding;
            clipped at 0. FID is biased upward at small N (more so for
            high-dimensional features): compare only values computed with the same N.
KID         Unbiased MMD^2 with the polynomial kernel ``k(a, b) = (a.b / d + 1)^3``
            (torchmetrics / torch-fidelity), averaged over ``n_subsets`` random subsets
            of ``subset_size`` images drawn without replacement from each set; returns
            ``(mean, std)`` over subsets (std with ddof=0, as torchmetrics). Raw value
            (papers often print KID x 1000). ``subset_size`` is clamped to
            ``min(N_real, N_fake)``; the estimate stays unbiased (KID's expectation
            does not depend on the subset size) but gets noisier, and with
            ``N_real == N_fake <= subset_size`` every subset is the whole set (std 0).
Bootstrap   ``fid_interval`` / ``kid_interval``: value = the statistic on the full
            sets, low / high from ``n_bootstrap`` replicates on resamples with
            replacement. FID: ``paired=True`` (used by :func:`lungsynth.methods.cgan.quality.quality_table`) draws the
            same image indices in both sets, keeping real/fake pairs together. FID
            replicates are biased upward (a resample holds ~63 % distinct images), so
            the raw percentiles can lie entirely above the value; the reported interval
            is the percentile interval shifted by the bootstrap bias estimate
            ``mean(replicates) - value``. Read it as a spread for comparing models at equal N. KID
            uses plain percentiles: each
            set is resampled on its own, as KID draws its subsets; within-set kernel
            terms between copies of one image are skipped, so duplicates add no bias
            (resampling pairs together would over-weight the similar (real[i],
            fake[i]) cross terms and bias the replicates down); ignoring the pairing
            makes the interval conservative when fakes resemble their partners.
            Replicate = mean over ``n_subsets`` subsets of the resample.
==========  =====================================================================
"""

from __future__ import annotations

import math

import numpy as np


_KERNEL_CACHE_LIMIT = 2048  # kernel matrices are precomputed up to this many images per set


def _as_features(f, name: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"{name} must be (N, D) with N >= 2, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or inf")
    return f


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) via ``scipy.linalg.sqrtm`` (float64).

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``. When the root
    is not finite or its diagonal has an imaginary part above 1e-3 x its largest
    real diagonal entry, it is recomputed with ``eps * I`` added to both
    covariances (pytorch-fid's guard for singular covariances); remaining small
    imaginary parts are dropped, larger ones raise ``ValueError``.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")

    def imag_ok(c: np.ndarray) -> bool:
        if not np.iscomplexobj(c):
            return True
        diag = np.diagonal(c)
        return bool(np.abs(diag.imag).max() <= 1e-3 * max(1.0, np.abs(diag.real).max()))

    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all() or not imag_ok(covmean):
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if not np.isfinite(covmean).all() or not imag_ok(covmean):
        raise ValueError("sqrtm(sigma1 sigma2) is not finite or has a large imaginary part; check the covariances")
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _fid(x: np.ndarray, y: np.ndarray) -> float:
    """FID of float64 feature matrices via the nuclear-norm identity (see the module docstring)."""
    n, m, d = len(x), len(y), x.shape[1]
    mx, my = x.mean(0), y.mean(0)
    a, b = x - mx, y - my
    ra = a if n <= d else np.linalg.qr(a, mode="r")
    rb = b if m <= d else np.linalg.qr(b, mode="r")
    tr_sqrt = np.linalg.svd(ra @ rb.T, compute_uv=False).sum() / math.sqrt((n - 1) * (m - 1))
    diff = mx - my
    value = diff @ diff + (a * a).sum() / (n - 1) + (b * b).sum() / (m - 1) - 2 * tr_sqrt
    return max(0.0, float(value))


def fid(features_real, features_fake) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)``, N, M >= 2 (float64, >= 0).

    Same value as ``frechet_distance`` of their means and covariances (ddof=1),
    computed exactly without a matrix square root (module docstring).
    """
    x, y = _as_features(features_real, "features_real"), _as_features(features_fake, "features_fake")
    _check_pair(x, y)
    return _fid(x, y)


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


class _Kernels:
    """Polynomial-kernel blocks for index subsets of two feature sets (cached matrices when small)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self.cached = max(len(x), len(y)) <= _KERNEL_CACHE_LIMIT
        if self.cached:
            self.kxx, self.kyy, self.kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)

    def mmd2(self, ix: np.ndarray, iy: np.ndarray) -> float:
        """Unbiased MMD^2 of ``x[ix]`` vs ``y[iy]``; within-set terms skip pairs with the same index."""
        if self.cached:
            kxx, kyy, kxy = self.kxx[np.ix_(ix, ix)], self.kyy[np.ix_(iy, iy)], self.kxy[np.ix_(ix, iy)]
        else:
            xs, ys = self.x[ix], self.y[iy]
            kxx, kyy, kxy = _poly_kernel(xs, xs), _poly_kernel(ys, ys), _poly_kernel(xs, ys)
        mx = ix[:, None] != ix[None, :]
        my = iy[:, None] != iy[None, :]
        return float(kxx[mx].sum() / mx.sum() + kyy[my].sum() / my.sum() - 2 * kxy.mean())


def _subset_mmds(kernels: _Kernels, bx: np.ndarray, by: np.ndarray, size: int, n_subsets: int,
                 rng: np.random.Generator) -> np.ndarray:
    """MMD^2 of ``n_subsets`` subsets of ``size`` positions of the index vectors ``bx``, ``by``."""
    out = np.empty(n_subsets)
    for s in range(n_subsets):
        px = rng.choice(len(bx), size, replace=False)
        py = rng.choice(len(by), size, replace=False)
        out[s] = kernels.mmd2(bx[px], by[py])
    return out


def _kid_size(subset_size: int, n: int, m: int) -> int:
    size = min(int(subset_size), n, m)
    if size < 2:
        raise ValueError(f"KID needs subsets of at least 2 images, got subset_size={subset_size}")
    return size


def kid(features_real, features_fake, subset_size: int = 100, n_subsets: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """KID ``(mean, std)`` over ``n_subsets`` subsets: unbiased MMD^2, kernel ``(a.b / d + 1)^3``.

    Subsets of ``min(subset_size, N_real, N_fake)`` images are drawn without
    replacement from each set independently (``numpy`` generator seeded with
    ``seed``); std with ddof=0 (torchmetrics). Raw value, not x 1000.
    """
    x, y = _as_features(features_real, "features_real"), _as_features(features_fake, "features_fake")
    _check_pair(x, y)
    size = _kid_size(subset_size, len(x), len(y))
    vals = _subset_mmds(_Kernels(x, y), np.arange(len(x)), np.arange(len(y)), size, n_subsets,
                        np.random.default_rng(seed))
    return float(vals.mean()), float(vals.std())


def _resample(rng: np.random.Generator, n: int, m: int, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    bx = rng.integers(0, n, n)
    return bx, (bx if paired else rng.integers(0, m, m))


def _percentiles(reps: list[float], confidence: float) -> tuple[float, float]:
    if not reps:
        return math.nan, math.nan
    low, high = np.quantile(np.asarray(reps), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _check_paired(x: np.ndarray, y: np.ndarray, paired: bool) -> None:
    if paired and len(x) != len(y):
        raise ValueError(f"paired=True needs equally many real and fake images, got {len(x)} and {len(y)}")


def fid_interval(features_real, features_fake, n_bootstrap: int = 50, seed: int = 0, confidence: float = 0.95,
                 paired: bool = False) -> dict[str, float]:
    """``{"value", "low", "high"}``: FID of the full sets and a basic bootstrap interval.

    Each replicate resamples the images of both sets with replacement (the same
    indices in both when ``paired``) and recomputes FID. The replicates are biased
    upward (duplicates shrink the effective N), so their raw percentiles can lie
    entirely above the value; the percentile interval is shifted down by the
    bootstrap bias estimate ``mean(replicates) - value`` (and clipped at 0).
    ``n_bootstrap=0`` gives NaN bounds.
    """
    x, y = _as_features(features_real, "features_real"), _as_features(features_fake, "features_fake")
    _check_pair(x, y)
    _check_paired(x, y, paired)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_bootstrap):
        bx, by = _resample(rng, len(x), len(y), paired)
        reps.append(_fid(x[bx], y[by]))
    value = _fid(x, y)
    q_low, q_high = _percentiles(reps, confidence)
    if not reps:
        return {"value": value, "low": q_low, "high": q_high}
    bias = float(np.mean(reps)) - value
    return {"value": value, "low": max(0.0, q_low - bias), "high": max(0.0, q_high - bias)}


def kid_interval(features_real, features_fake, subset_size: int = 100, n_subsets: int = 100,
                 n_bootstrap: int = 50, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """``{"value", "low", "high"}``: KID mean (:func:`kid`, same ``seed``) and a bootstrap percentile interval.

    Each replicate resamples each set with replacement on its own (never in pairs,
    see the module docstring) and takes the mean MMD^2 over ``n_subsets`` subsets of
    the resample, skipping within-set kernel terms between copies of one image (so
    duplicates add no bias). ``n_bootstrap=0`` gives NaN bounds.
    """
    x, y = _as_features(features_real, "features_real"), _as_features(features_fake, "features_fake")
    _check_pair(x, y)
    size = _kid_size(subset_size, len(x), len(y))
    kernels = _Kernels(x, y)
    value = _subset_mmds(kernels, np.arange(len(x)), np.arange(len(y)), size, n_subsets,
                         np.random.default_rng(seed)).mean()
    rng = np.random.default_rng([seed, 1])
    reps = []
    for _ in range(n_bootstrap):
        bx, by = _resample(rng, len(x), len(y), False)
        reps.append(float(_subset_mmds(kernels, bx, by, size, n_subsets, rng).mean()))
    low, high = _percentiles(reps, confidence)
    return {"value": float(value), "low": low, "high": high}
