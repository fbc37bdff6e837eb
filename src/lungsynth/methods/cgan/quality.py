"""Image quality of conditional GANs (label map -> CT slice): seed 001's Table II.

Seed 001's Table II compares models by FID, PSNR, SSIM and RMSE on complete and lung-only images.
:func:`quality_table` computes them: FID / KID from :mod:`lungsynth.metrics.distribution` on features
of :mod:`lungsynth.networks.feature_extractor`, pixel metrics from :mod:`lungsynth.metrics.similarity`
and :mod:`lungsynth.metrics.masked` (whose docstrings give the conventions).

Data: images are uint8 ``(N, 1, S, S)`` in 0..255 (decoded to [-1, 1] as
``x / 127.5 - 1`` before a network sees them); label maps are uint8 ``(N, S, S)``
with 0 outside the lung, 1 lung, 2 ground-glass, 3 consolidation; the lung region
is ``labels >= 1``. ``fake[i]`` is the image synthesised from ``labels[i]``, the
label map of ``real[i]``, so ``(real[i], fake[i])`` is a pair.

Table       :func:`quality_table`: pixel metrics as the mean over pairs with a
            Student-t interval (:func:`lungsynth.metrics.intervals.t_interval`); FID / KID with
            the bootstrap intervals of :mod:`lungsynth.metrics.distribution`; ``n`` = pairs with a defined value, or images
            per set for FID / KID.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lungsynth.data.preprocess import uint8_image_batch
from lungsynth.data.segmentation import label_map_batch
from lungsynth.metrics import similarity
from lungsynth.metrics.distribution import fid_interval, kid_interval
from lungsynth.metrics.intervals import t_interval
from lungsynth.metrics.masked import masked_psnr, masked_rmse, masked_ssim
from lungsynth.tasks.feature_extractor import extract_features

REGIONS: tuple[str, ...] = ("complete", "lung")
QUALITY_METRICS: tuple[str, ...] = ("FID", "KID", "PSNR", "SSIM", "RMSE")


# ----------------------------------------------------------------------------- Inception-v3


def _chunked(fn, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, chunk: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(x), chunk):
        if mask is None:
            out.append(fn(x[i : i + chunk], y[i : i + chunk]))
        else:
            out.append(fn(x[i : i + chunk], y[i : i + chunk], mask[i : i + chunk]))
    return torch.cat(out).numpy() if out else np.zeros(0)


def quality_table(real, fake, labels, extractor: nn.Module | None, *, kid_subset_size: int = 100,
                  kid_subsets: int = 100, n_bootstrap: int = 50, seed: int = 0, confidence: float = 0.95,
                  batch_size: int = 64, device: str = "cpu"):
    """Table II-style quality of ``fake`` against ``real``: a DataFrame with 10 rows.

    ``real``, ``fake``: uint8 ``(N, 1, S, S)``, ``fake[i]`` synthesised from
    ``labels[i]`` (uint8 ``(N, S, S)``), the label map of ``real[i]``. Rows: region in
    :data:`REGIONS` x metric in :data:`QUALITY_METRICS`; columns ``region, metric,
    value, low, high, n``. PSNR / SSIM / RMSE: mean over pairs with a ``confidence``
    Student-t interval (pairs with an undefined lung-only value are left out; an
    identical pair makes PSNR ``inf``); FID / KID: features from ``extractor``
    (e.g. :class:`DomainFeatureExtractor` or :class:`InceptionFeatures`), bootstrap
    intervals (:func:`fid_interval` with ``paired=True``, :func:`kid_interval`), ``n`` = N.
    Lung region: pixel metrics over ``labels >= 1``; FID / KID on images with the
    non-lung pixels set to 0. ``extractor=None`` skips FID / KID (NaN, ``n`` = 0).
    """
    import pandas as pd

    x = uint8_image_batch(real, "real")
    y = uint8_image_batch(fake, "fake")
    if x.shape != y.shape:
        raise ValueError(f"real and fake differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    lab = label_map_batch(labels, x)
    lung = lab >= 1
    rows = []
    for region in REGIONS:
        mask = None if region == "complete" else lung
        if extractor is None:
            fid_row = kid_row = {"value": math.nan, "low": math.nan, "high": math.nan}
            n_sets = 0
        else:
            xr, yr = (x, y) if mask is None else (x * mask[:, None], y * mask[:, None])
            fr = extract_features(extractor, xr, batch_size=batch_size, device=device)
            ff = extract_features(extractor, yr, batch_size=batch_size, device=device)
            fid_row = fid_interval(fr, ff, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, paired=True)
            kid_row = kid_interval(fr, ff, subset_size=kid_subset_size, n_subsets=kid_subsets,
                                   n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
            n_sets = len(x)
        rows.append({"region": region, "metric": "FID", **fid_row, "n": n_sets})
        rows.append({"region": region, "metric": "KID", **kid_row, "n": n_sets})
        pixel = {
            "PSNR": (similarity.psnr, masked_psnr),
            "SSIM": (similarity.ssim, masked_ssim),
            "RMSE": (similarity.rmse, masked_rmse),
        }
        for metric, (full_fn, masked_fn) in pixel.items():
            values = _chunked(full_fn if mask is None else masked_fn, x, y, mask)
            values = values[~np.isnan(values)]
            with np.errstate(invalid="ignore"):  # inf PSNR (identical pairs): inf mean, NaN bounds
                mean, low, high = t_interval(values, confidence)
            rows.append({"region": region, "metric": metric, "value": mean, "low": low, "high": high,
                         "n": len(values)})
    return pd.DataFrame(rows, columns=["region", "metric", "value", "low", "high", "n"])
