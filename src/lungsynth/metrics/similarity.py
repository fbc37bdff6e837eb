"""Full-reference image similarity indices and a fast all-pairs engine.

Used to judge generated frames against real ones (set-to-set comparison),
among themselves (diversity / mode collapse) and against the training frames
(memorisation). Every metric is a batched torch function over pairs
``(x[i], y[i])``:

* inputs are ``(B, C, H, W)`` tensors (``(B, H, W)`` is read as grayscale) or
  numpy arrays; floats are taken to lie in ``[0, data_range]`` with
  ``data_range=1.0`` by default; **uint8 inputs are read in gray levels with
  ``data_range=255``** (so ``rmse`` comes out in gray levels, all other indices
  are the same as for ``x / 255`` with ``data_range=1``);
* ``x`` is the reference (ground truth, "GT" in sewar) and ``y`` the image under
  test, the argument order of ``sewar.full_ref`` (``psnr_b`` and ``rase`` are
  the only asymmetric ones);
* results are ``(B,)`` float64 tensors (the direct functions compute in
  float64; the all-pairs SSIM/MS-SSIM engine in float32, within 1e-5 of them).

Conventions (which reference each one matches, see ``tests/test_similarity.py``):

========  =====================================================================
ssim      Gaussian window 11, sigma 1.5, K=(0.01, 0.03), 'valid' filtering, mean
          of the map (pytorch-msssim; scikit-image with gaussian_weights=True,
          use_sample_covariance=False). torchmetrics 1.9 averages its map over the
          reflect-padded full image instead (about 0.01-0.03 higher here). Not
          sewar's default, which uses an 11x11 *uniform* window and reads higher.
ms_ssim   5 scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2
          average pooling between scales, contrast-structure terms and the last
          SSIM clamped at 0 (pytorch-msssim's relu; torchmetrics is within 2e-3
          for similar pairs, its padded borders differ). sewar raises negative
          terms to fractional powers and keeps the real part, so it can return
          negative values for dissimilar pairs where this gives >= 0.
psnr      10 log10(data_range^2 / MSE) per image (sewar, skimage, torchmetrics).
psnr_b    PSNR with the blocking-effect factor of Yim & Bovik (8x8 blocks) of
          the *test* image ``y``: ``psnr_b(GT, P)`` as in sewar; grayscale (the
          first channel is used, as sewar does for YCbCr).
rmse      root mean squared error over all pixels and channels, in input units.
rase      relative average spectral error, window 8, the torchmetrics / sewar
          <= 0.4.8 scale by default, which is window^2 = 64x Wald's percentage
          (sewar >= 0.4.9; ``convention="wald"``); pixels whose local mean of
          ``x`` is 0 count as 0 (sewar's guard; torchmetrics gives inf/NaN).
sam       spectral angle in radians. C == 1: the angle between the two
          flattened images (per-pixel SAM is degenerate for one band); C > 1:
          mean per-pixel angle, pixels with a zero spectrum excluded (sewar).
scc       spatial correlation coefficient: Laplacian high-pass
          [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] (symmetric padding), local
          correlation in an 8x8 uniform window (zero padding), mean of the map
          (torchmetrics; sewar agrees).
========  =====================================================================
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lungsynth.metrics.intervals import t_interval

__all__ = [
    "MS_SSIM_WEIGHTS",
    "METRICS",
    "HIGHER_IS_BETTER",
    "ssim",
    "ssim_map",
    "ms_ssim",
    "ms_ssim_weights",
    "psnr",
    "psnr_b",
    "rmse",
    "rase",
    "sam",
    "scc",
    "pairwise",
    "compare_sets",
    "diversity",
    "nearest_neighbours",
    "summarise",
]

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03

Images = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------- helpers


def _as_images(x: Images) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W) or (B, H, W), got {tuple(x.shape)}")
    return x


def _default_range(x: torch.Tensor, data_range: float | None) -> float:
    if data_range is not None:
        if not data_range > 0:
            raise ValueError(f"data_range must be positive, got {data_range}")
        return float(data_range)
    if x.dtype == torch.uint8:
        return 255.0
    if x.dtype.is_floating_point:
        return 1.0
    raise TypeError(f"give data_range for images of dtype {x.dtype}")


def _prepare(x: Images, y: Images, data_range: float | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Float64 ``(B, C, H, W)`` pair batches and the data range (255 for uint8, else 1)."""
    x, y = _as_images(x), _as_images(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if (x.dtype == torch.uint8) != (y.dtype == torch.uint8):
        raise TypeError(f"x and y must both be uint8 or both be float, got {x.dtype} and {y.dtype}")
    dr = _default_range(x, data_range)
    return x.to(torch.float64), y.to(torch.float64), dr


@functools.lru_cache(maxsize=64)
def _band(n: int, taps: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    """``(n, n - k + 1)`` matrix G with ``(v @ G)[j] = sum_t taps[t] v[j + t]`` ('valid' correlation)."""
    k = len(taps)
    m = n - k + 1
    if m < 1:
        raise ValueError(f"a {k}-tap filter needs at least {k} samples, got {n}")
    g = torch.zeros(n, m, dtype=dtype)
    w = torch.tensor(taps, dtype=dtype)
    idx = torch.arange(m)
    for t in range(k):
        g[idx + t, idx] = w[t]
    return g


def _sep_filter(x: torch.Tensor, taps_v: tuple[float, ...], taps_h: tuple[float, ...]) -> torch.Tensor:
    """Separable 'valid' correlation of ``(..., H, W)`` with vertical and horizontal taps (band-matrix matmuls)."""
    gh = _band(x.shape[-1], taps_h, x.dtype)
    gv = _band(x.shape[-2], taps_v, x.dtype)
    return gv.T @ (x @ gh)


@functools.lru_cache(maxsize=4)
def _gauss_taps(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> tuple[float, ...]:
    c = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(c**2) / (2 * sigma**2))
    return tuple((g / g.sum()).tolist())


def _box_taps(size: int) -> tuple[float, ...]:
    return (1.0 / size,) * size


def _sym_pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Symmetric ('d c b a | a b c d | d c b a', scipy 'reflect') padding of the last two dims."""
    for dim in (-2, -1):
        parts = []
        if before:
            parts.append(x.narrow(dim, 0, before).flip(dim))
        parts.append(x)
        if after:
            parts.append(x.narrow(dim, x.shape[dim] - after, after).flip(dim))
        x = torch.cat(parts, dim)
    return x


def _downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling, zero-padded by one on odd sides (pytorch-msssim)."""
    pad = [s % 2 for s in x.shape[-2:]]
    shape = x.shape
    out = F.avg_pool2d(x.reshape(-1, 1, *shape[-2:]), kernel_size=2, padding=pad)
    return out.reshape(*shape[:-2], *out.shape[-2:])


def _check_ms_size(h: int, w: int, levels: int) -> None:
    need = (WIN_SIZE - 1) * 2 ** (levels - 1) + 1
    if min(h, w) < need:
        raise ValueError(
            f"MS-SSIM with {levels} scales needs images of at least {need}x{need} px (got {h}x{w}); "
            f"pass weights=ms_ssim_weights(k) with fewer scales, e.g. k=3 for 64-px images"
        )


def ms_ssim_weights(levels: int) -> tuple[float, ...]:
    """The first ``levels`` standard MS-SSIM weights, renormalised to sum to 1 (for small images).

    Values computed with fewer than 5 scales are not comparable with 5-scale MS-SSIM.
    """
    if not 1 <= levels <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"levels must be in 1..{len(MS_SSIM_WEIGHTS)}")
    w = np.asarray(MS_SSIM_WEIGHTS[:levels])
    return tuple((w / w.sum()).tolist())


# ----------------------------------------------------------------------------- metrics


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, dr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and CS maps, ``(B, C, H - 10, W - 10)`` each ('valid' Gaussian filtering)."""
    taps = _gauss_taps()
    c1, c2 = (K1 * dr) ** 2, (K2 * dr) ** 2
    mx, my = _sep_filter(x, taps, taps), _sep_filter(y, taps, taps)
    sxx = _sep_filter(x * x, taps, taps) - mx * mx
    syy = _sep_filter(y * y, taps, taps) - my * my
    sxy = _sep_filter(x * y, taps, taps) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return lum * cs, cs


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, dr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel means of the SSIM and CS maps, ``(B, C)`` each."""
    s, cs = _ssim_maps(x, y, dr)
    return s.mean((-2, -1)), cs.mean((-2, -1))


def ssim_map(x: Images, y: Images, data_range: float | None = None) -> torch.Tensor:
    """Per-pixel SSIM map, ``(B, C, H - 10, W - 10)`` float64 (settings of :func:`ssim`).

    'valid' filtering: map pixel ``[i, j]`` belongs to the 11x11 window centred on
    image pixel ``[i + 5, j + 5]``; ``ssim(x, y)`` is this map's mean over pixels
    and channels.
    """
    x, y, dr = _prepare(x, y, data_range)
    return _ssim_maps(x, y, dr)[0]


def ssim(x: Images, y: Images, data_range: float | None = None) -> torch.Tensor:
    """SSIM per pair, ``(B,)`` float64, usually in (0, 1], can be negative.

    Gaussian window 11 / sigma 1.5, K1=0.01, K2=0.03, 'valid' filtering (no padding),
    mean of the SSIM map, then mean over channels: pytorch-msssim's ``ssim`` and
    scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. torchmetrics 1.9 includes a reflect-padded border
    in the mean (slightly higher); sewar's ``ssim`` default (11x11 uniform window) is
    a different index and reads higher.
    """
    x, y, dr = _prepare(x, y, data_range)
    return _ssim_terms(x, y, dr)[0].mean(1)


def ms_ssim(
    x: Images, y: Images, data_range: float | None = None, weights: Sequence[float] | None = None
) -> torch.Tensor:
    """Multi-scale SSIM per pair, ``(B,)`` float64 in [0, 1].

    5 scales with weights ``MS_SSIM_WEIGHTS``, 2x2 average pooling between scales,
    SSIM settings as :func:`ssim`; the per-scale contrast-structure means and the
    last-scale SSIM are clamped at 0 before the weighted product (pytorch-msssim),
    then averaged over channels. sewar's ``msssim`` keeps
    negative terms (real part of a complex power), so it can be negative for
    dissimilar pairs where this is >= 0. Needs a smaller side of at least 161 px
    for 5 scales (see :func:`ms_ssim_weights` for fewer).
    """
    x, y, dr = _prepare(x, y, data_range)
    w = torch.tensor(MS_SSIM_WEIGHTS if weights is None else tuple(weights), dtype=torch.float64)
    _check_ms_size(x.shape[-2], x.shape[-1], len(w))
    out = torch.ones(x.shape[:2], dtype=torch.float64)
    for level in range(len(w)):
        s, cs = _ssim_terms(x, y, dr)
        if level < len(w) - 1:
            out *= cs.clamp_min(0) ** w[level]
            x, y = _downsample(x), _downsample(y)
        else:
            out *= s.clamp_min(0) ** w[level]
    return out.mean(1)


def psnr(x: Images, y: Images, data_range: float | None = None) -> torch.Tensor:
    """PSNR in dB per pair, ``(B,)`` float64: ``10 log10(data_range^2 / MSE)``; ``inf`` for identical images."""
    x, y, dr = _prepare(x, y, data_range)
    mse = ((x - y) ** 2).mean((1, 2, 3))
    return 10 * torch.log10(dr**2 / mse)


def _bef(y: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Blocking-effect factor (Yim & Bovik 2011) of ``(B, H, W)`` images, ``(B,)``; sewar's counts."""
    _, h, w = y.shape
    dh = (y[:, :, :-1] - y[:, :, 1:]) ** 2  # (B, H, W-1): column i vs i+1
    dv = (y[:, :-1, :] - y[:, 1:, :]) ** 2
    hb = torch.zeros(w - 1, dtype=torch.bool)
    hb[block - 1 :: block] = True
    vb = torch.zeros(h - 1, dtype=torch.bool)
    vb[block - 1 :: block] = True
    d_b = dh[:, :, hb].sum((1, 2)) + dv[:, vb, :].sum((1, 2))
    d_bc = dh[:, :, ~hb].sum((1, 2)) + dv[:, ~vb, :].sum((1, 2))
    n_hb = h * (w / block) - 1
    n_hbc = h * (w - 1) - n_hb
    n_vb = w * (h / block) - 1
    n_vbc = w * (h - 1) - n_vb
    d_b = d_b / (n_hb + n_vb)
    d_bc = d_bc / (n_hbc + n_vbc)
    t = math.log2(block) / math.log2(min(h, w))
    return torch.where(d_b > d_bc, t * (d_b - d_bc), torch.zeros_like(d_b))


def psnr_b(x: Images, y: Images, data_range: float | None = None, block_size: int = 8) -> torch.Tensor:
    """PSNR-B in dB per pair, ``(B,)`` float64: PSNR with MSE + BEF(``y``) (Yim & Bovik).

    ``x`` is the reference, ``y`` the image under test (sewar's ``psnrb(GT, P)``;
    torchmetrics' ``(preds, target)`` order is the reverse). Grayscale: only the
    first channel is used, as sewar does. Equals :func:`psnr` when ``y`` shows no
    blocking at the 8x8 grid.
    """
    x, y, dr = _prepare(x, y, data_range)
    x, y = x[:, 0], y[:, 0]
    mse = ((x - y) ** 2).mean((1, 2)) + _bef(y, block_size)
    return 10 * torch.log10(dr**2 / mse)


def rmse(x: Images, y: Images, data_range: float | None = None) -> torch.Tensor:
    """Root mean squared error per pair, ``(B,)`` float64, in input units (gray levels for uint8).

    ``data_range`` is accepted for a uniform signature and not used.
    """
    x, y, _ = _prepare(x, y, data_range)
    return ((x - y) ** 2).mean((1, 2, 3)).sqrt()


def _box_mean_sym(x: torch.Tensor, ws: int) -> torch.Tensor:
    """Mean over the window ``[i - ws//2, i + ws - 1 - ws//2]`` with symmetric padding (scipy ``uniform_filter``)."""
    return _sep_filter(_sym_pad(x, ws // 2, ws - 1 - ws // 2), _box_taps(ws), _box_taps(ws))


def rase(
    x: Images, y: Images, data_range: float | None = None, window_size: int = 8, convention: str = "torchmetrics"
) -> torch.Tensor:
    """Relative average spectral error per pair, ``(B,)`` float64; lower is better, 0 for identical images.

    ``x`` is the reference. Per pixel ``100 / M * sqrt(mean_c RMSE_w^2)``, with RMSE_w the
    local RMSE and M the local mean of ``x`` (channel mean) in a ``window_size`` window
    (scipy ``uniform_filter`` placement, symmetric padding), averaged over the map without
    a border of ``round(window_size / 2)``; pixels with M == 0 count as 0 (sewar's guard;
    torchmetrics gives inf/NaN there).

    ``convention="torchmetrics"`` (default; torchmetrics and sewar <= 0.4.8) divides the
    local mean by ``window_size**2`` once more, so values are ``window_size**2`` (64x)
    larger than the percentage of Wald's definition; ``convention="wald"`` gives that
    percentage (sewar >= 0.4.9): constant images 100 vs 110 give 10.
    """
    if convention not in ("torchmetrics", "wald"):
        raise ValueError(f"convention must be 'torchmetrics' or 'wald', got {convention!r}")
    x, y, _ = _prepare(x, y, data_range)
    rmse_map = _box_mean_sym((x - y) ** 2, window_size).clamp_min(0).sqrt()
    m = _box_mean_sym(x, window_size).mean(1)
    if convention == "torchmetrics":
        m = m / window_size**2
    rms = (rmse_map**2).mean(1).sqrt()
    safe = torch.where(m != 0, m, torch.ones_like(m))
    rase_map = torch.where(m != 0, 100.0 / safe * rms, torch.zeros_like(m))
    s = round(window_size / 2)
    return rase_map[:, s:-s, s:-s].mean((1, 2))


def sam(x: Images, y: Images, data_range: float | None = None) -> torch.Tensor:
    """Spectral angle mapper in radians per pair, ``(B,)`` float64 in [0, pi]; 0 = same direction.

    C == 1: the angle between the two flattened images (per-pixel SAM of one band is
    degenerate). C > 1: mean over pixels of the angle between the pixels' spectra;
    pixels with a zero spectrum in either image are left out (sewar), NaN if none remain.
    """
    x, y, _ = _prepare(x, y, data_range)
    if x.shape[1] == 1:
        x, y = x.flatten(1).unsqueeze(-1), y.flatten(1).unsqueeze(-1)  # (B, HW, 1): one "pixel"
    else:
        x, y = x.flatten(2), y.flatten(2)  # (B, C, HW)
    dot = (x * y).sum(1)
    norms = x.norm(dim=1) * y.norm(dim=1)
    valid = norms > 0
    angle = torch.where(valid, (dot / torch.where(valid, norms, 1.0)).clamp(-1, 1).acos(), 0.0)
    n = valid.sum(1)
    return torch.where(n > 0, angle.sum(1) / n.clamp_min(1), torch.nan)


_LAPLACIAN_BOX3 = 9.0  # [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] = 9 * delta - ones(3, 3)


def _highpass(x: torch.Tensor) -> torch.Tensor:
    """SCC's Laplacian high-pass (x2, as sewar's ``generic_laplace`` and torchmetrics), same size."""
    p = _sym_pad(x, 1, 1)
    box = _sep_filter(p, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    return 2.0 * (_LAPLACIAN_BOX3 * x - box)


def scc(x: Images, y: Images, data_range: float | None = None, window_size: int = 8) -> torch.Tensor:
    """Spatial correlation coefficient per pair, ``(B,)`` float64 in [-1, 1]; 1 for identical images.

    Both images are high-passed with the Laplacian [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]
    (symmetric padding); the local correlation of the two high-pass images in a
    ``window_size`` uniform window (zero padding, window ``[i-4, i+3]`` for 8) is averaged
    over pixels and channels; negative local variances are set to 0 and pixels where
    either local variance is 0 count as 0. Matches torchmetrics (``reduction="none"``) and sewar.
    """
    x, y, _ = _prepare(x, y, data_range)
    hx, hy = _highpass(x), _highpass(y)
    before, after = (window_size - 1 + 1) // 2, (window_size - 1) // 2  # ceil, floor of (ws-1)/2
    taps = _box_taps(window_size)

    def local_mean(z: torch.Tensor) -> torch.Tensor:
        return _sep_filter(F.pad(z, (before, after, before, after)), taps, taps)

    mx, my = local_mean(hx), local_mean(hy)
    vx = (local_mean(hx * hx) - mx * mx).clamp_min(0)
    vy = (local_mean(hy * hy) - my * my).clamp_min(0)
    cov = local_mean(hx * hy) - mx * my
    den = vx.sqrt() * vy.sqrt()
    zero = den == 0
    out = torch.where(zero, 0.0, cov / torch.where(zero, 1.0, den))
    return out.mean((1, 2, 3))


METRICS: dict[str, Callable[..., torch.Tensor]] = {
    "ms_ssim": ms_ssim,
    "ssim": ssim,
    "psnr": psnr,
    "psnr_b": psnr_b,
    "rmse": rmse,
    "rase": rase,
    "sam": sam,
    "scc": scc,
}
HIGHER_IS_BETTER: dict[str, bool] = {
    "ms_ssim": True,
    "ssim": True,
    "psnr": True,
    "psnr_b": True,
    "rmse": False,
    "rase": False,
    "sam": False,
    "scc": True,
}


# ----------------------------------------------------------------------------- all-pairs SSIM / MS-SSIM engine


def _tile_count(n_out: int, target: int) -> int:
    """The divisor ``d`` of ``n_out`` whose tile ``n_out / d`` is closest to ``target`` (equal tiles)."""
    divisors = [d for d in range(1, n_out + 1) if n_out % d == 0 and n_out // d >= min(n_out, 16)]
    return min(divisors, key=lambda d: (abs(n_out / d - target), d))


@dataclass
class _Scale:
    """Per-image statistics of one scale, laid out in equal output tiles.

    ``x``: ``(N, ty, tx, Ty + 10, Tx + 10)`` overlapping input tiles; ``mu``, ``s``
    (= sigma^2 + C2/2) and ``q`` (= mu^2 + C1/2): ``(N, P)`` with ``P = ty*tx*Ty*Tx``
    pixels of the 'valid' map in tile order. ``gh``: ``(Tx+10, Tx)`` band matrix,
    ``gv2``: ``(Ty, Ty+10)`` transposed band matrix times 2.
    """

    x: torch.Tensor
    mu: torch.Tensor
    s: torch.Tensor
    q: torch.Tensor | None
    gh: torch.Tensor
    gv2: torch.Tensor


_TILE_TARGET = 48  # output tile side; band-matrix GEMMs on ~60-px tiles are ~4x cheaper than full-width ones


def _scale_stats(x: torch.Tensor, need_q: bool) -> _Scale:
    """Statistics of ``(N, H, W)`` float32 images in [0, 1] for one scale."""
    n, h, w = x.shape
    taps = _gauss_taps()
    k = len(taps)
    ho, wo = h - k + 1, w - k + 1
    c1, c2 = K1**2, K2**2
    mu = _sep_filter(x, taps, taps)
    var = _sep_filter(x * x, taps, taps) - mu * mu
    ty, tx = _tile_count(ho, _TILE_TARGET), _tile_count(wo, _TILE_TARGET)
    th, tw = ho // ty, wo // tx

    def tiles(m: torch.Tensor) -> torch.Tensor:
        return m.reshape(n, ty, th, tx, tw).permute(0, 1, 3, 2, 4).reshape(n, -1).contiguous()

    xt = x.unfold(1, th + k - 1, th).unfold(2, tw + k - 1, tw).contiguous()
    return _Scale(
        x=xt,
        mu=tiles(mu),
        s=tiles(var + c2 / 2),
        q=tiles(mu * mu + c1 / 2) if need_q else None,
        gh=_band(tw + k - 1, taps, x.dtype),
        gv2=(2 * _band(th + k - 1, taps, x.dtype).T).contiguous(),
    )


def _set_stats(x: torch.Tensor, levels: int) -> list[_Scale]:
    out = []
    for level in range(levels):
        out.append(_scale_stats(x, need_q=level == levels - 1))
        if level < levels - 1:
            x = _downsample(x)
    return out


class _Workspace:
    """Reusable flat float32 buffers: fresh multi-MB tensors per block cost page faults (~2x slower ops)."""

    def __init__(self) -> None:
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            buf = self.bufs[name] = torch.empty(numel, dtype=dtype)
        return buf[:numel].view(shape)


def _block_scale(a: _Scale, b: _Scale, ra: slice, rb: slice, with_lum: bool, ws: _Workspace) -> torch.Tensor:
    """Mean CS map (or SSIM map if ``with_lum``) for all pairs ``a[ra] x b[rb]``: ``(r, c)``."""
    xa, xb = a.x[ra], b.x[rb]
    r, c = xa.shape[0], xb.shape[0]
    dt = xa.dtype
    tih, tiw = xa.shape[-2:]
    th, tw = a.gv2.shape[0], a.gh.shape[1]
    prod = ws.get("prod", (r, c, *xa.shape[1:]), dt)
    torch.mul(xa.unsqueeze(1), xb.unsqueeze(0), out=prod)  # x*y, (r, c, ty, tx, Ti, Tj)
    nb = prod.numel() // (tih * tiw)
    fh = ws.get("fh", (nb * tih, tw), dt)
    torch.mm(prod.view(-1, tiw), a.gh, out=fh)
    num = ws.get("num", (nb, th, tw), dt)
    torch.bmm(a.gv2.expand(nb, th, tih), fh.view(nb, tih, tw), out=num)  # 2 G*(xy)
    num = num.view(r, c, -1)
    mua, mub = a.mu[ra].unsqueeze(1), b.mu[rb].unsqueeze(0)
    num.addcmul_(mua, mub, value=-2).add_(K2**2)  # 2 sigma_xy + C2
    den = ws.get("den", num.shape, dt)
    torch.add(a.s[ra].unsqueeze(1), b.s[rb].unsqueeze(0), out=den)
    num.div_(den)  # cs map
    if with_lum:
        torch.mul(mua, mub, out=den)
        num.mul_(den.mul_(2).add_(K1**2))
        torch.add(a.q[ra].unsqueeze(1), b.q[rb].unsqueeze(0), out=den)  # type: ignore[index]
        num.div_(den)
    return num.mean(-1)


def _block_value(
    a: list[_Scale], b: list[_Scale], ra: slice, rb: slice, weights: Sequence[float | None], ws: _Workspace
) -> torch.Tensor:
    """SSIM (one weight) or MS-SSIM for all pairs ``a[ra] x b[rb]``, ``(r, c)`` float32."""
    levels = len(weights)
    if levels == 1 and weights[0] is None:  # plain SSIM: no clamping
        return _block_scale(a[0], b[0], ra, rb, True, ws)
    out = None
    for level in range(levels):
        v = _block_scale(a[level], b[level], ra, rb, level == levels - 1, ws).clamp_min(0)
        v = v ** weights[level]  # type: ignore[operator]
        out = v if out is None else out * v
    return out  # type: ignore[return-value]


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last > 5 or self.done >= self.total):
            rate = self.done / max(now - self.start, 1e-9)
            print(f"  {self.done}/{self.total} pairs, {rate:.0f} pairs/s", file=sys.stderr, flush=True)
            self.last = now


def _fast_ssim_pairs(
    metric: str,
    a: torch.Tensor,
    b: torch.Tensor | None,
    data_range: float | None,
    weights: Sequence[float] | None,
    batch_size: int,
    progress: bool,
    stats_block: int,
) -> torch.Tensor:
    dr = _default_range(a, data_range)
    if b is not None and (a.dtype == torch.uint8) != (b.dtype == torch.uint8):
        raise TypeError("a and b must both be uint8 or both be float")
    if metric == "ssim":
        levels, w = 1, [None]
    else:
        w = list(MS_SSIM_WEIGHTS if weights is None else weights)
        levels = len(w)
        _check_ms_size(a.shape[-2], a.shape[-1], levels)
    n = a.shape[0]
    m = n if b is None else b.shape[0]
    channels = a.shape[1]
    side = max(1, int(round(math.sqrt(batch_size))))
    total = n * (n - 1) // 2 if b is None else n * m
    prog = _Progress(total * channels, progress)
    out = torch.zeros(n, m, dtype=torch.float64)
    ws = _Workspace()

    def prep(z: torch.Tensor, ch: int) -> list[_Scale]:
        return _set_stats(z[:, ch].to(torch.float32) / dr, levels)

    for ch in range(channels):
        for i0 in range(0, n, stats_block):
            i1 = min(n, i0 + stats_block)
            sa = prep(a[i0:i1], ch)
            for j0 in range(i0 if b is None else 0, m, stats_block):
                j1 = min(m, j0 + stats_block)
                if b is None:
                    sb = sa if j0 == i0 else prep(a[j0:j1], ch)
                else:
                    sb = prep(b[j0:j1], ch)
                for p0 in range(0, i1 - i0, side):
                    p1 = min(i1 - i0, p0 + side)
                    q_start = p0 if (b is None and j0 == i0) else 0
                    for q0 in range(q_start, j1 - j0, side):
                        q1 = min(j1 - j0, q0 + side)
                        val = _block_value(sa, sb, slice(p0, p1), slice(q0, q1), w, ws)
                        out[i0 + p0 : i0 + p1, j0 + q0 : j0 + q1] += val.to(torch.float64)
                        if b is None and j0 == i0 and q0 == p0:
                            prog.update((p1 - p0) * (p1 - p0 - 1) // 2)
                        else:
                            prog.update((p1 - p0) * (q1 - q0))
    out /= channels
    return _mirror_upper(out) if b is None else out


def _mirror_upper(out: torch.Tensor) -> torch.Tensor:
    """A square matrix whose upper triangle holds the pair values -> symmetric, NaN on the diagonal."""
    upper = torch.triu(torch.ones(len(out), len(out), dtype=torch.bool), diagonal=1)
    return torch.where(upper, out, out.T).fill_diagonal_(torch.nan)


def pairwise(
    metric: str | Callable[..., torch.Tensor],
    a: Images,
    b: Images | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
    stats_block: int = 256,
    **kwargs: Any,
) -> torch.Tensor:
    """Metric between every ``a[i]`` (reference) and ``b[j]`` (test): ``(N, M)`` float64.

    ``a``: ``(N, C, H, W)``, ``b``: ``(M, C, H, W)`` (or ``(N, H, W)`` grayscale; uint8
    or float, see the module docstring). With ``b=None`` the metric is computed among
    ``a`` for ``i < j`` only and mirrored (symmetric metrics): the diagonal is NaN.
    ``metric`` is a name in :data:`METRICS` or a callable with the metric signature;
    ``kwargs`` go to it (``data_range``, ``weights``, ``window_size`` ...).

    ``"ms_ssim"`` and ``"ssim"`` use a dedicated engine: per-image local means and
    variances (per scale) are computed once, and per pair only the Gaussian-filtered
    product ``x*y`` is computed (float32, separable filter as matmuls with band
    matrices over equal tiles, blocks of about ``batch_size`` pairs, inference mode);
    it agrees with :func:`ms_ssim` / pytorch-msssim within 1e-5 (about 2000 pairs/s
    for 256x256 grayscale on 2 CPU cores). Memory: about 1.1 MB per 256x256 image and
    channel held (``stats_block`` images of ``a`` and of ``b`` at a time) plus about
    1.4 MB per pair of a block (~90 MB for the default 64). Other metrics run the metric function on
    blocks of ``batch_size`` pairs.
    """
    a = _as_images(a)
    b = None if b is None else _as_images(b)
    if b is not None and a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a and b images differ in shape: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    name = metric if isinstance(metric, str) else None
    if name is not None and name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    with torch.inference_mode():
        if name in ("ms_ssim", "ssim"):
            extra = set(kwargs) - {"data_range", "weights"}
            if extra or (name == "ssim" and "weights" in kwargs):
                raise TypeError(f"unexpected arguments for {name}: {sorted(extra)}")
            return _fast_ssim_pairs(
                name, a, b, kwargs.get("data_range"), kwargs.get("weights"), batch_size, progress, stats_block
            )
        fn = METRICS[name] if name is not None else metric
        n = a.shape[0]
        m = n if b is None else b.shape[0]
        bb = a if b is None else b
        out = torch.full((n, m), torch.nan, dtype=torch.float64)
        side = max(1, int(round(math.sqrt(batch_size))))
        prog = _Progress(n * (n - 1) // 2 if b is None else n * m, progress)
        for i0 in range(0, n, side):
            i1 = min(n, i0 + side)
            for j0 in range(i0 if b is None else 0, m, side):
                j1 = min(m, j0 + side)
                r, c = i1 - i0, j1 - j0
                xa = a[i0:i1].unsqueeze(1).expand(r, c, *a.shape[1:]).reshape(r * c, *a.shape[1:])
                xb = bb[j0:j1].unsqueeze(0).expand(r, c, *bb.shape[1:]).reshape(r * c, *bb.shape[1:])
                out[i0:i1, j0:j1] = torch.as_tensor(fn(xa, xb, **kwargs), dtype=torch.float64).view(r, c)
                prog.update(r * c)
        if b is None:
            out = _mirror_upper(out)
    return out


# ----------------------------------------------------------------------------- studies


def compare_sets(
    generated: Images,
    real: Images,
    metrics: Iterable[str] = ("ms_ssim", "ssim", "psnr", "psnr_b", "rmse", "rase", "sam", "scc"),
    *,
    batch_size: int = 64,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """All pairs generated x real per metric: ``{name: (N_generated, M_real) float64}``.

    ``real[j]`` is the reference and ``generated[i]`` the image under test in each
    pair (matters for ``psnr_b`` and ``rase`` only). ``options`` maps a metric name to
    extra arguments (e.g. ``{"ms_ssim": {"weights": ms_ssim_weights(3)}}``).
    """
    options = options or {}
    return {
        name: pairwise(name, real, generated, batch_size=batch_size, progress=progress, **options.get(name, {})).T
        for name in metrics
    }


def diversity(images: Images, metric: str = "ms_ssim", **kwargs: Any) -> torch.Tensor:
    """Metric values of all pairs ``i < j`` among one set, ``(N(N-1)/2,)`` float64 (row-major order).

    Mode-collapse check: a high mean MS-SSIM among generated images means low
    diversity; compare it with the same statistic among real images of the same
    class. ``kwargs`` go to :func:`pairwise`.
    """
    mat = pairwise(metric, images, None, **kwargs)
    i, j = torch.triu_indices(mat.shape[0], mat.shape[1], offset=1)
    return mat[i, j]


def nearest_neighbours(
    generated: Images,
    train: Images,
    metric: str = "ms_ssim",
    *,
    threshold: float = 0.95,
    **kwargs: Any,
):
    """Each generated image's most similar training image (memorisation check).

    Returns a pandas DataFrame with one row per generated image and columns
    ``generated_index, train_index, score, near_copy``: the best score (max for
    similarity metrics, min for the distances ``rmse``, ``rase``, ``sam``) and
    ``near_copy = score >= threshold`` (``score <= threshold`` for distances).
    ``train[j]`` is the reference in each pair. ``kwargs`` go to :func:`pairwise`.
    """
    import pandas as pd

    mat = pairwise(metric, train, generated, **kwargs).T.cpu()  # (N_generated, M_train)
    higher = HIGHER_IS_BETTER.get(metric, True)
    fill = -torch.inf if higher else torch.inf
    filled = torch.where(torch.isnan(mat), fill, mat)
    idx = filled.argmax(1) if higher else filled.argmin(1)
    score = mat.gather(1, idx.unsqueeze(1)).squeeze(1)
    near = score >= threshold if higher else score <= threshold
    return pd.DataFrame(
        {
            "generated_index": np.arange(mat.shape[0]),
            "train_index": idx.numpy(),
            "score": score.numpy(),
            "near_copy": near.numpy(),
        }
    )


def summarise(values: Images | Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """``n, mean, std (ddof=1), ci_low, ci_high`` of the finite values (NaN ignored), t interval.

    Pair values from :func:`diversity` or :func:`compare_sets` are not independent
    (each image is in many pairs), so this interval understates their uncertainty;
    summarise per-image means when a defensible interval is needed.
    """
    v = np.asarray(torch.as_tensor(values).detach().cpu().to(torch.float64)).ravel()
    v = v[~np.isnan(v)]
    mean, low, high = t_interval(v, confidence)
    std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    return {"n": int(len(v)), "mean": mean, "std": std, "ci_low": low, "ci_high": high}
