"""Paired pixel metrics over a region: PSNR, RMSE and SSIM restricted to a mask.

Inputs: ``x``, ``y`` images ``(N, C, H, W)`` (or ``(N, H, W)``) of one shape, ``mask`` boolean
``(N, H, W)`` or ``(N, 1 or C, H, W)``; one value per pair, NaN for a pair without mask pixels.

==========  =====================================================================
PSNR        ``10 log10(255^2 / MSE)`` per pair, dB; ``inf`` when the region is identical.
RMSE        root mean squared error per pair, gray levels (0..255).
SSIM        :func:`lungsynth.metrics.similarity.ssim` conventions (Gaussian 11 / 1.5, 'valid').
Lung-only   Pixel metrics over lung pixels only (``labels >= 1`` of the pair's label
            map): PSNR / RMSE from the MSE over those pixels; SSIM = mean of the SSIM
            map over map pixels whose window centre is a lung pixel (the 'valid' map
            is 5 px smaller on each side, so the mask is cropped by 5 px; the windows
            still see up to 5 px of neighbouring tissue). A pair without (such) lung
            pixels gives NaN and is left out. FID / KID lung-only: non-lung pixels
            set to 0 (black) in both sets before feature extraction. (Lung-only pixel
            metrics taken over blacked-out full frames, as papers often do, are
            inflated by the shared black background; these are not comparable.)
==========  =====================================================================
"""

from __future__ import annotations

import torch

from lungsynth.metrics import similarity


def _prepare_masked(x, y, mask, data_range: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    x, y, dr = similarity._prepare(x, y, data_range)
    m = torch.as_tensor(mask)
    if m.ndim == 3:
        m = m.unsqueeze(1)
    if m.ndim != 4 or m.shape[0] != x.shape[0] or m.shape[1] not in (1, x.shape[1]) or m.shape[2:] != x.shape[2:]:
        raise ValueError(f"mask must be (N, H, W) or (N, 1 or C, H, W) for images {tuple(x.shape)}, "
                         f"got {tuple(m.shape)}")
    return x, y, (m != 0).expand_as(x), dr


def _masked_mse(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    sq = torch.where(m, (x - y) ** 2, 0.0)
    return sq.sum((1, 2, 3)) / m.sum((1, 2, 3))


def masked_psnr(x, y, mask, data_range: float | None = None) -> torch.Tensor:
    """PSNR in dB over the masked pixels of each pair, ``(N,)`` float64.

    ``x``, ``y``: ``(N, C, H, W)`` or ``(N, H, W)``, uint8 (``data_range`` 255) or
    float (``data_range`` 1 unless given), as :func:`lungsynth.metrics.similarity.psnr`;
    ``mask``: ``(N, H, W)`` or ``(N, 1|C, H, W)``, nonzero = in the region (shared
    by the channels). ``10 log10(data_range^2 / MSE_mask)``: ``inf`` when the region
    is identical, NaN when the mask is empty. An all-True mask gives exactly
    ``similarity.psnr``.
    """
    x, y, m, dr = _prepare_masked(x, y, mask, data_range)
    return 10 * torch.log10(dr**2 / _masked_mse(x, y, m))


def masked_rmse(x, y, mask, data_range: float | None = None) -> torch.Tensor:
    """RMSE over the masked pixels of each pair, ``(N,)`` float64, input units (gray levels for uint8).

    Conventions of :func:`masked_psnr`; 0 for an identical region, NaN for an empty
    mask; ``data_range`` is not used. An all-True mask gives exactly ``similarity.rmse``.
    """
    x, y, m, _ = _prepare_masked(x, y, mask, data_range)
    return _masked_mse(x, y, m).sqrt()


def masked_ssim(x, y, mask, data_range: float | None = None) -> torch.Tensor:
    """Mean of the SSIM map over the masked region, ``(N,)`` float64.

    Map as :func:`lungsynth.metrics.similarity.ssim_map` ('valid' filtering: 10 px smaller
    than the image). The mask is cropped by ``(11 - 1) // 2 = 5`` px on each side, so
    a map pixel counts when the centre of its 11x11 window is in the mask (the
    window itself may reach 5 px past the region); mean per channel, then over
    channels. NaN when no masked pixel lies 5 px or more inside the image border.
    An all-True mask gives exactly ``similarity.ssim``.
    """
    x, y, m, dr = _prepare_masked(x, y, mask, data_range)
    smap = similarity._ssim_maps(x, y, dr)[0]
    b = (similarity.WIN_SIZE - 1) // 2
    m = m[..., b : m.shape[-2] - b, b : m.shape[-1] - b]
    per_channel = torch.where(m, smap, 0.0).sum((-2, -1)) / m.sum((-2, -1))
    return per_channel.mean(1)
