"""Image quality of conditional GANs (label map -> CT slice): FID, KID and paired pixel metrics.

Seed 001's Table II compares models by FID, PSNR, SSIM and RMSE on complete and
lung-only images. This module computes those numbers with documented conventions:

Data: images are uint8 ``(N, 1, S, S)`` in 0..255 (decoded to [-1, 1] as
``x / 127.5 - 1`` before a network sees them); label maps are uint8 ``(N, S, S)``
with 0 outside the lung, 1 lung, 2 ground-glass, 3 consolidation; the lung region
is ``labels >= 1``. ``fake[i]`` is the image synthesised from ``labels[i]``, the
label map of ``real[i]``, so ``(real[i], fake[i])`` is a pair.

Features for FID / KID
    By default a **domain feature extractor** (:class:`DomainFeatureExtractor`)
    trained inside the pipeline on the real training slices to predict the tissue
    label of each 16x16 cell (no download; nothing pretrained exists offline). Its
    features are the global mean and standard deviation of the last block,
    ``16 * width`` values (512 at width 32). With a user-supplied torchvision
    Inception-v3 weights file, :class:`InceptionFeatures` gives the usual 2048-d
    pool features. Either way the values are **not** the paper's: the domain
    features are a different space altogether, and torchvision's ImageNet
    Inception-v3 differs from the TF FID-Inception of pytorch-fid / torch-fidelity.
    Compare models with each other under one extractor, never with published FIDs.

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
            replacement. FID: ``paired=True`` (used by :func:`quality_table`) draws the
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
PSNR        ``10 log10(255^2 / MSE)`` per pair, dB; ``inf`` when the region is identical.
RMSE        root mean squared error per pair, gray levels (0..255).
SSIM        :func:`lungsynth.similarity.ssim` conventions (Gaussian 11 / 1.5, 'valid').
Lung-only   Pixel metrics over lung pixels only (``labels >= 1`` of the pair's label
            map): PSNR / RMSE from the MSE over those pixels; SSIM = mean of the SSIM
            map over map pixels whose window centre is a lung pixel (the 'valid' map
            is 5 px smaller on each side, so the mask is cropped by 5 px; the windows
            still see up to 5 px of neighbouring tissue). A pair without (such) lung
            pixels gives NaN and is left out. FID / KID lung-only: non-lung pixels
            set to 0 (black) in both sets before feature extraction. (Lung-only pixel
            metrics taken over blacked-out full frames, as papers often do, are
            inflated by the shared black background; these are not comparable.)
Table       :func:`quality_table`: pixel metrics as the mean over pairs with a
            Student-t interval (:func:`lungsynth.metrics.t_interval`); FID / KID with
            the bootstrap above; ``n`` = pairs with a defined value, or images
            per set for FID / KID.
==========  =====================================================================
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import similarity
from .errors import InputDataError
from .io_utils import torch_load, torch_save
from .metrics import t_interval
from .runlog import progress_bar
from .engine import Step, TrainingLoop, Value, run_fingerprint
from .training import decode_uint8, select_device

log = logging.getLogger(__name__)

__all__ = [
    "REGIONS",
    "QUALITY_METRICS",
    "DomainFeatureExtractor",
    "train_feature_extractor",
    "save_feature_extractor",
    "load_feature_extractor",
    "InceptionFeatures",
    "extract_features",
    "frechet_distance",
    "fid",
    "kid",
    "fid_interval",
    "kid_interval",
    "masked_psnr",
    "masked_rmse",
    "masked_ssim",
    "quality_table",
]

REGIONS: tuple[str, ...] = ("complete", "lung")
QUALITY_METRICS: tuple[str, ...] = ("FID", "KID", "PSNR", "SSIM", "RMSE")
MAX_CLASS_WEIGHT = 10.0
_KERNEL_CACHE_LIMIT = 2048  # kernel matrices are precomputed up to this many images per set


# ----------------------------------------------------------------------------- domain feature extractor


class DomainFeatureExtractor(nn.Module):
    """Small CNN trained on real slices to predict tissue labels; its pooled activations are FID/KID features.

    Four blocks of (3x3 conv stride 2, GroupNorm, LeakyReLU 0.2) with ``width``,
    ``2 width``, ``4 width``, ``8 width`` channels, then a 1x1 conv head giving
    ``n_labels`` logits per cell at 1/16 resolution (:meth:`forward`).
    :meth:`features` is the per-channel global mean and global standard deviation
    (ddof=0) of the last block, ``(B, 16 * width)``. GroupNorm keeps every image's
    features independent of the rest of its batch (up to float rounding); no
    dropout, so features are deterministic in eval and train mode alike.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, n_labels: int = 4) -> None:
        super().__init__()
        self.config = {"in_channels": int(in_channels), "width": int(width), "n_labels": int(n_labels)}
        layers: list[nn.Module] = []
        c_in = in_channels
        for k in range(4):
            c_out = width * 2**k
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(math.gcd(8, c_out), c_out),
                nn.LeakyReLU(0.2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, n_labels, 1)

    @property
    def feature_dim(self) -> int:
        """Length of :meth:`features` vectors: ``16 * width``."""
        return 16 * self.config["width"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Label logits ``(B, n_labels, ceil(S/16), ceil(S/16))`` for float ``(B, C, S, S)`` in [-1, 1]."""
        return self.head(self.body(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 16 * width)``: [mean, std] over positions of the last block's channels, for ``x`` in [-1, 1]."""
        h = self.body(x)
        return torch.cat([h.mean((2, 3)), h.std((2, 3), correction=0)], 1)


def _as_images(images, name: str = "images") -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ValueError(f"{name} must be uint8 (N, C, S, S) or (N, S, S), got {x.dtype} {tuple(x.shape)}")
    return x


def _as_labels(labels, images: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(labels)
    if y.ndim == 4 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels must have shape {(images.shape[0], *images.shape[2:])}, got {tuple(y.shape)}")
    return y


def _cell_labels(labels: torch.Tensor, size: Sequence[int], n_labels: int) -> torch.Tensor:
    """Mode of the labels in each output cell, ``(B, h, w)`` long (ties -> lower label)."""
    onehot = F.one_hot(labels.long(), n_labels).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, tuple(size)).argmax(1)


def train_feature_extractor(
    images,
    labels,
    *,
    width: int = 32,
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    work_dir: str | Path | None = None,
    stop_after: int | None = None,
):
    """Train a :class:`DomainFeatureExtractor` on real slices: ``(model in eval mode, history DataFrame)``.

    ``images``: uint8 ``(N, 1, S, S)``; ``labels``: uint8 ``(N, S, S)`` in ``0..3``.
    Task: per-cell tissue label at 1/16 resolution, the target being the mode of
    the labels in the cell. Adam, cross-entropy weighted by inverse cell-label
    frequency (``total / (K_present * count_c)``, capped at ``MAX_CLASS_WEIGHT``,
    so rare lesion cells count), random horizontal flips (p = 1/2, image and
    labels together). Initialisation, batch order and flips follow ``seed``: reruns
    are identical on the same device with the same number of torch threads (other
    thread counts change float rounding). The last incomplete batch of an epoch is skipped. ``history`` has one row per epoch:
    ``epoch, loss, cell_accuracy, balanced_accuracy`` (on the augmented training
    batches); it is identical between identical runs, so each epoch's wall time goes to the log only.
    With ``work_dir`` each epoch ends in a checkpoint there and a rerun resumes from the last one;
    ``stop_after`` epochs stop the call early as if killed (tests), returning ``(None, history so far)``.
    """
    import pandas as pd

    x_all = _as_images(images)
    y_all = _as_labels(labels, x_all)
    n_labels = 4
    if int(y_all.max()) >= n_labels:
        raise ValueError(f"labels must be in 0..{n_labels - 1}, found {int(y_all.max())}")
    loop = TrainingLoop(work_dir, total=epochs, seed=seed, device=device, amp=False, desc="feature extractor",
                        unit="epoch", progress=progress, stop_after=stop_after)
    dev = loop.device
    with torch.random.fork_rng(devices=[]):
        loop.seed_torch()
        model = DomainFeatureExtractor(in_channels=x_all.shape[1], width=width, n_labels=n_labels)
    model.to(dev)
    with torch.no_grad():
        grid = model(torch.zeros(1, *x_all.shape[1:], device=dev)).shape[-2:]
    counts = torch.zeros(n_labels, dtype=torch.float64)
    for i in range(0, len(y_all), 256):
        counts += torch.bincount(_cell_labels(y_all[i : i + 256], grid, n_labels).ravel(), minlength=n_labels)
    present = counts > 0
    weights = torch.where(present, counts.sum() / (int(present.sum()) * counts.clamp_min(1)), 0.0)
    weights = weights.clamp_max(MAX_CLASS_WEIGHT).float().to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x_all)
    batch = min(batch_size, n)
    steps = max(1, n // batch)
    history = Value([])
    loop.resume({"model": model, "optimiser": optimiser, "history": history},
                run_fingerprint(x_all, y_all, width, batch_size, lr, model))

    def epoch_fn(epoch: int) -> Step:
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=loop.stream(31, epoch))
        total_loss = 0.0
        correct = torch.zeros(n_labels, dtype=torch.float64)
        seen = torch.zeros(n_labels, dtype=torch.float64)
        bar = progress_bar(range(steps), desc=f"features epoch {epoch + 1}/{epochs}", unit="step", disable=not progress)
        for step in bar:
            idx = perm[step * batch : (step + 1) * batch]
            x, y = x_all[idx], y_all[idx]
            flip = torch.rand(len(idx), generator=loop.stream(32, epoch, step)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = torch.where(flip[:, None, None], y.flip(-1), y)
            target = _cell_labels(y, grid, n_labels).to(dev)
            logits = model(decode_uint8(x).to(dev))
            loss = F.cross_entropy(logits, target, weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total_loss += loss.item()
            hit = (logits.argmax(1) == target).cpu()
            t = target.cpu().ravel()
            seen += torch.bincount(t, minlength=n_labels)
            correct += torch.bincount(t[hit.ravel()], minlength=n_labels)
        bar.close()
        recall = (correct / seen)[seen > 0]
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / steps,
            "cell_accuracy": float(correct.sum() / seen.sum()),
            "balanced_accuracy": float(recall.mean()),
        }
        history.value.append(record)
        log.info("feature extractor epoch %d (%.1f s): %s", epoch + 1, time.perf_counter() - start, record)
        return Step(losses={"loss": record["loss"]})

    ended = loop.run(epoch_fn)
    if ended.stopped:
        return None, pd.DataFrame(history.value)
    return model.eval(), pd.DataFrame(history.value)


def save_feature_extractor(model: DomainFeatureExtractor, path: str | Path) -> None:
    """Write the state dict and constructor arguments to ``path`` (atomically; read with ``weights_only``)."""
    state = {"kind": "domain_feature_extractor", "config": dict(model.config), "state_dict": model.state_dict()}
    torch_save(path, state)


def load_feature_extractor(path: str | Path, device: str = "cpu") -> DomainFeatureExtractor:
    """Inverse of :func:`save_feature_extractor`: the model in eval mode on ``device``."""
    try:
        state = torch_load(path)
        model = DomainFeatureExtractor(**state["config"])
        model.load_state_dict(state["state_dict"])
    except Exception as exc:
        raise InputDataError(
            path,
            f"is not a readable domain feature extractor ({type(exc).__name__}: {exc})",
            "delete it and re-run the job that trains the feature extractor",
        ) from exc
    return model.to(select_device(device)).eval()


# ----------------------------------------------------------------------------- Inception-v3


_INCEPTION_FIX = (
    "give a torchvision-format Inception-v3 state dict, e.g. inception_v3_google-0cc3c7bd.pth, the file "
    "torchvision downloads for Inception_V3_Weights.IMAGENET1K_V1 (fetch it on a machine with internet access "
    "and copy it here), or leave the weights unset to use the domain feature extractor"
)


class InceptionFeatures(nn.Module):
    """torchvision Inception-v3 with user-supplied ImageNet weights: 2048-d pool features.

    Built as ``inception_v3(weights=None, aux_logits=True, init_weights=False,
    transform_input=True)`` (``transform_input`` as torchvision sets it for its
    ImageNet weights) with ``fc = Identity``; the weights are read from
    ``weights_path`` with ``weights_only=True`` (a plain state dict or
    ``{"state_dict": ...}``; ``AuxLogits.*`` keys may be absent). :meth:`features`
    repeats grayscale to 3 channels, maps [-1, 1] to [0, 1], resizes bilinearly
    (antialiased) to 299x299 without cropping, applies the ImageNet mean/std and
    returns the average-pooled 2048 features. torchvision's ImageNet Inception-v3 is
    not the TF FID-Inception of pytorch-fid / torch-fidelity (different weights and
    resizing), so FIDs from it are not comparable with published ones either.
    Always in eval mode.
    """

    feature_dim = 2048
    _mean = (0.485, 0.456, 0.406)
    _std = (0.229, 0.224, 0.225)

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(weights_path)
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        if not path.is_file():
            raise InputDataError(path, "Inception-v3 weights file not found", _INCEPTION_FIX)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputDataError(
                path, f"cannot be read as a PyTorch state dict ({type(exc).__name__}: {exc})", _INCEPTION_FIX
            ) from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InputDataError(path, "does not hold a state dict (name -> tensor)", _INCEPTION_FIX)
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise InputDataError(path, f"does not fit torchvision's Inception-v3 ({exc})", _INCEPTION_FIX) from exc
        missing = [k for k in result.missing_keys if not k.startswith("AuxLogits.")]
        if missing or result.unexpected_keys:
            raise InputDataError(
                path,
                f"is not a torchvision Inception-v3 state dict: {len(missing)} missing keys "
                f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected keys "
                f"(e.g. {result.unexpected_keys[:3]})",
                _INCEPTION_FIX,
            )
        net.fc = nn.Identity()
        net.AuxLogits = None
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        self.register_buffer("mean", torch.tensor(self._mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self._std).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stays in eval mode (BatchNorm running statistics, no dropout)."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2048)`` for float ``(B, 1 or 3, H, W)`` in [-1, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        return self.net((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# ----------------------------------------------------------------------------- features


@torch.no_grad()
def extract_features(extractor: nn.Module, images, batch_size: int = 64, device: str = "cpu",
                     progress: bool = False) -> np.ndarray:
    """``extractor.features`` of uint8 ``(N, C, S, S)`` images decoded to [-1, 1]: float64 ``(N, D)``.

    Moves ``extractor`` to ``device`` and sets it to eval mode (in place).
    """
    x = _as_images(images)
    dev = select_device(device)
    extractor.to(dev).eval()
    out = []
    starts = range(0, len(x), batch_size)
    for i in progress_bar(starts, desc="features", unit="batch", disable=not progress):
        out.append(extractor.features(decode_uint8(x[i : i + batch_size]).to(dev)).double().cpu())
    if not out:
        return np.zeros((0, int(extractor.feature_dim)))
    return torch.cat(out).numpy()


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


# ----------------------------------------------------------------------------- FID


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


# ----------------------------------------------------------------------------- KID


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


# ----------------------------------------------------------------------------- bootstrap intervals


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


# ----------------------------------------------------------------------------- masked pixel metrics


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
    float (``data_range`` 1 unless given), as :func:`lungsynth.similarity.psnr`;
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

    Map as :func:`lungsynth.similarity.ssim_map` ('valid' filtering: 10 px smaller
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


# ----------------------------------------------------------------------------- table


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

    x = _as_images(real, "real")
    y = _as_images(fake, "fake")
    if x.shape != y.shape:
        raise ValueError(f"real and fake differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    lab = _as_labels(labels, x)
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
