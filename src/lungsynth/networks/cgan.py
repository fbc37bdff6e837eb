"""Seed 001's conditional global-local GAN (label map -> CT slice) and its comparators.

Conventions: label maps are one-hot float tensors ``(B, L, H, W)``; images are
``(B, C, H, W)`` in [-1, 1]; ``H = W`` is a power of 2.

- Seed 001 / pix2pixHD generator: :class:`GlobalGenerator` (G1) at ``H / 2**n_local`` plus
  ``n_local`` :class:`LocalEnhancer` (G2) stages, combined by :class:`GlobalLocalGenerator`.
  Each enhancer fuses its downsampled features ``f1`` with the previous stage's final
  features ``f2`` by a plain sum (pix2pixHD), a fixed convex blend, or DESUM:
  ``alpha * f1 + (1 - alpha) * f2`` with ``alpha`` from the :class:`DESUM` weighting net.
- Discriminators: :class:`PatchDiscriminator` (PatchGAN, returns every block's activation for
  feature matching) and :class:`MultiscaleDiscriminator` (index 0 = full resolution).
  :class:`DFMWeighting` predicts the per-scale feature-matching weights (``beta, 1 - beta``).
- Comparators: pix2pix :class:`UNetGenerator`; SPADE (:class:`SPADE`, :class:`SPADEResBlock`,
  :class:`SPADEGenerator`); SEAN (:class:`StyleEncoder`, :class:`SEANNorm`,
  :class:`SEANResBlock`, :class:`SEANGenerator`).

Parameter counts that match the published implementations exactly (see the tests):
pix2pix ``unet_256`` (3 -> 3, width 64) 54,413,955 (pix2pix prints "54.414 M"); pix2pix
PatchGAN (6 in, n_layers 3, batch norm) 2,768,705; ``GlobalGenerator(3, 3, 64, n_downsample=2, n_blocks=9)`` 11,378,179
(CycleGAN's ``resnet_9blocks``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from lungsynth.networks.dcgan import count_parameters

__all__ = [
    "DESUM",
    "DFMWeighting",
    "GlobalGenerator",
    "GlobalLocalGenerator",
    "LocalEnhancer",
    "MultiscaleDiscriminator",
    "PatchDiscriminator",
    "RegionwiseLinear",
    "ResidualBlock",
    "SEANGenerator",
    "SEANNorm",
    "SEANResBlock",
    "SPADE",
    "SPADEGenerator",
    "SPADEModulation",
    "SPADEResBlock",
    "StyleEncoder",
    "UNetGenerator",
    "count_parameters",
    "downsample",
    "downsample_labels",
    "feature_matching_loss",
    "init_weights_",
    "region_average",
]

FUSIONS = ("desum", "sum", "fixed")
DESUM_SOURCES = ("features", "map")
DISCRIMINATOR_NORMS = ("instance", "batch", "none")
PARAM_FREE_NORMS = ("instance", "batch")

#: Margin that keeps learned weights strictly inside (0, 1) even when the logits saturate.
WEIGHT_EPS = 1e-6


# --- resampling helpers ------------------------------------------------------------------------


def _log2(factor: int) -> int:
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"downsampling factor must be a power of 2 (1, 2, 4, ...), got {factor}")
    return factor.bit_length() - 1


def downsample(x: Tensor, factor: int) -> Tensor:
    """Images ``(B, C, H, W)`` -> ``(B, C, H / factor, W / factor)`` by repeated 3x3 average pooling.

    pix2pixHD's pyramid: ``avg_pool 3x3, stride 2, padding 1, count_include_pad=False`` applied
    ``log2(factor)`` times. ``factor`` must be a power of 2 (1 returns ``x``).
    """
    for _ in range(_log2(factor)):
        x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
    return x


def downsample_labels(onehot: Tensor, factor: int) -> Tensor:
    """One-hot maps ``(B, L, H, W)`` -> ``(B, L, H / factor, W / factor)``, still one-hot (nearest)."""
    _log2(factor)
    if factor == 1:
        return onehot
    h, w = onehot.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"label map side {h}x{w} is not divisible by the downsampling factor {factor}")
    return F.interpolate(onehot, size=(h // factor, w // factor), mode="nearest")


def _resize_labels(onehot: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest resize of a one-hot map to ``size`` (no-op when it already has that size)."""
    if tuple(onehot.shape[-2:]) == tuple(size):
        return onehot
    return F.interpolate(onehot, size=tuple(size), mode="nearest")


def _open_unit(p: Tensor, n: int = 2) -> Tensor:
    """Map probabilities in [0, 1] into ``[eps, 1 - (n - 1) eps]`` so they stay strictly inside (0, 1)."""
    return WEIGHT_EPS + (1.0 - n * WEIGHT_EPS) * p


def _at_least_float32(x: Tensor) -> Tensor:
    """Half/bfloat16 logits (autocast) are upcast so sigmoid/softmax do not round to exactly 0 or 1."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


# --- pix2pixHD building blocks -----------------------------------------------------------------


class ConvNormReLU(nn.Sequential):
    """Conv -> InstanceNorm (affine=False) -> ReLU. ``reflect`` pads by reflection (7x7 stems)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, reflect: bool = False) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                      padding_mode="reflect" if reflect else "zeros"),
            nn.InstanceNorm2d(out_channels),
            nn.ReLU(),
        )


class UpConvNormReLU(nn.Sequential):
    """Transposed conv 3x3 stride 2 (``(B, C, H, W) -> (B, C', 2H, 2W)``) -> InstanceNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(out_channels),
            nn.ReLU(),
        )


class OutputHead(nn.Sequential):
    """Reflection-padded 7x7 conv to ``out_channels`` + tanh: features -> image in [-1, 1]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 7, padding=3, padding_mode="reflect"), nn.Tanh())


class ResidualBlock(nn.Module):
    """``x + (pad, conv3x3, IN, ReLU, pad, conv3x3, IN)(x)`` with reflection padding; shape-preserving."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator G1: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)`` in [-1, 1].

    7x7 stem (width), ``n_downsample`` stride-2 convs doubling the width, ``n_blocks`` residual
    blocks, as many transposed-conv upsamplings back to ``width``, then the 7x7 + tanh head.
    ``H`` must be divisible by ``2**n_downsample``.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, width: int = 64, n_downsample: int = 3, n_blocks: int = 9) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = [ConvNormReLU(in_channels, width, 7, reflect=True)]
        for i in range(n_downsample):
            layers.append(ConvNormReLU(width * 2**i, width * 2 ** (i + 1), 3, stride=2))
        layers += [ResidualBlock(width * 2**n_downsample) for _ in range(n_blocks)]
        for i in range(n_downsample, 0, -1):
            layers.append(UpConvNormReLU(width * 2**i, width * 2 ** (i - 1)))
        self.body = nn.Sequential(*layers)
        self.head = OutputHead(width, out_channels)

    def features(self, x: Tensor) -> Tensor:
        """``(B, width, H, W)`` features before the output head."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class DESUM(nn.Module):
    """Seed 001's weighting net: source ``(B, in_channels, h, w)`` -> alpha ``(B, 1, 1, 1)`` in (0, 1).

    3 x (conv 3x3 stride 2 + LeakyReLU 0.2) at ``hidden`` channels, global average pooling,
    FC(hidden) + ReLU, FC(1), sigmoid. Alpha is computed in at least float32 and kept inside
    ``[1e-6, 1 - 1e-6]`` so it never saturates to exactly 0 or 1.
    """

    def __init__(self, in_channels: int, hidden: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for _ in range(3):
            layers += [nn.Conv2d(c_in, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = hidden
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, source: Tensor) -> Tensor:
        logit = self.fc(self.convs(source).mean(dim=(2, 3)))
        return _open_unit(torch.sigmoid(_at_least_float32(logit))).view(-1, 1, 1, 1)


class LocalEnhancer(nn.Module):
    """pix2pixHD local enhancer G2 with a choice of feature fusion.

    ``features(x, g)``: ``x`` label map ``(B, in_channels, H, W)``; ``g`` the previous stage's
    final features ``(B, 2 * width, H/2, W/2)``. Front end (7x7 conv to ``width``, stride-2 conv to
    ``2 * width``) gives ``f1``; fused with ``f2 = g``; ``n_blocks`` residual blocks; one
    transposed-conv upsampling -> ``(B, width, H, W)``. ``forward`` adds the 7x7 + tanh head.

    Args:
        fusion: ``"desum"`` (``alpha * f1 + (1 - alpha) * f2``, alpha from :class:`DESUM`),
            ``"sum"`` (pix2pixHD, ``f1 + f2``), ``"fixed"`` (alpha = ``fixed_alpha``, no net).
        desum_source: what DESUM sees: ``"features"`` = ``cat(f1, f2)`` (``4 * width`` channels),
            ``"map"`` = the label map downsampled to ``f1``'s size (``in_channels`` channels).
        output_head: False for inner enhancers of a cascade (pix2pixHD gives only the
            outermost one an image head); ``forward`` then raises.

    ``last_alpha`` holds the (detached) alpha of the last call, ``(B, 1, 1, 1)``, or None for "sum".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        width: int = 32,
        n_blocks: int = 3,
        fusion: str = "desum",
        fixed_alpha: float = 0.5,
        desum_source: str = "features",
        desum_hidden: int = 32,
        output_head: bool = True,
    ) -> None:
        super().__init__()
        _check_choice("fusion", fusion, FUSIONS)
        _check_choice("desum_source", desum_source, DESUM_SOURCES)
        if not 0.0 <= fixed_alpha <= 1.0:
            raise ValueError(f"fixed_alpha must lie in [0, 1], got {fixed_alpha}")
        self.fusion = fusion
        self.fixed_alpha = float(fixed_alpha)
        self.desum_source = desum_source
        self.front = nn.Sequential(ConvNormReLU(in_channels, width, 7, reflect=True), ConvNormReLU(width, 2 * width, 3, stride=2))
        self.desum: DESUM | None = None
        if fusion == "desum":
            self.desum = DESUM(4 * width if desum_source == "features" else in_channels, desum_hidden)
        self.back = nn.Sequential(*[ResidualBlock(2 * width) for _ in range(n_blocks)], UpConvNormReLU(2 * width, width))
        self.head = OutputHead(width, out_channels) if output_head else None
        self.last_alpha: Tensor | None = None

    def fuse(self, x: Tensor, f1: Tensor, f2: Tensor) -> Tensor:
        """Combine ``f1`` (own features) and ``f2`` (previous stage) per ``self.fusion``; sets ``last_alpha``."""
        if self.fusion == "sum":
            self.last_alpha = None
            return f1 + f2
        if self.desum is None:
            alpha = torch.full((f1.shape[0], 1, 1, 1), self.fixed_alpha, dtype=torch.promote_types(f1.dtype, torch.float32), device=f1.device)
        else:
            source = torch.cat([f1, f2], dim=1) if self.desum_source == "features" else _resize_labels(x, f1.shape[-2:])
            alpha = self.desum(source)
        self.last_alpha = alpha.detach()
        return alpha * f1 + (1 - alpha) * f2

    def features(self, x: Tensor, global_features: Tensor) -> Tensor:
        """``(B, width, H, W)`` features before the output head."""
        f1 = self.front(x)
        if f1.shape[1:] != global_features.shape[1:]:
            raise ValueError(
                f"previous-stage features {tuple(global_features.shape[1:])} do not match this enhancer's "
                f"downsampled features {tuple(f1.shape[1:])} (need 2 * width channels at half the input side)"
            )
        return self.back(self.fuse(x, f1, global_features))

    def forward(self, x: Tensor, global_features: Tensor) -> Tensor:
        """Image ``(B, out_channels, H, W)`` in [-1, 1]."""
        if self.head is None:
            raise RuntimeError("this LocalEnhancer has no output head (output_head=False); use .features()")
        return self.head(self.features(x, global_features))


class GlobalLocalGenerator(nn.Module):
    """Seed 001's generator (fusion ``"desum"``) and pix2pixHD's (``"sum"``): label map -> image.

    ``(B, label_channels, H, W)`` one-hot -> ``(B, out_channels, H, W)`` in [-1, 1].
    G1 (width ``width * 2**n_local``) runs on the label map downsampled (nearest) by
    ``2**n_local``; enhancer ``k`` (outermost last, width ``width * 2**(n_local - 1 - k)``) runs on
    the map at ``H / 2**(n_local - 1 - k)``. ``n_local = 0`` is G1 alone at full resolution.
    ``H`` must be divisible by ``2**(n_local + n_downsample_global)``.
    """

    def __init__(
        self,
        label_channels: int,
        out_channels: int = 1,
        width: int = 32,
        n_local: int = 1,
        n_downsample_global: int = 3,
        n_blocks_global: int = 9,
        n_blocks_local: int = 3,
        fusion: str = "desum",
        fixed_alpha: float = 0.5,
        desum_source: str = "features",
        desum_hidden: int = 32,
    ) -> None:
        super().__init__()
        if n_local < 0:
            raise ValueError(f"n_local must be >= 0, got {n_local}")
        self.n_local = n_local
        self.global_generator = GlobalGenerator(label_channels, out_channels, width * 2**n_local, n_downsample_global, n_blocks_global)
        self.local_enhancers = nn.ModuleList(
            LocalEnhancer(
                label_channels,
                out_channels,
                width * 2 ** (n_local - 1 - k),
                n_blocks_local,
                fusion=fusion,
                fixed_alpha=fixed_alpha,
                desum_source=desum_source,
                desum_hidden=desum_hidden,
                output_head=k == n_local - 1,
            )
            for k in range(n_local)
        )

    def forward(self, label_map: Tensor) -> Tensor:
        if self.n_local == 0:
            return self.global_generator(label_map)
        feats = self.global_generator.features(downsample_labels(label_map, 2**self.n_local))
        for k, enhancer in enumerate(self.local_enhancers):
            x = downsample_labels(label_map, 2 ** (self.n_local - 1 - k))
            feats = enhancer.features(x, feats)
        return self.local_enhancers[-1].head(feats)

    def forward_global(self, label_map: Tensor) -> Tensor:
        """Training step 1: full-res map -> G1's image ``(B, out_channels, H / 2**n_local, W / 2**n_local)``."""
        return self.global_generator(downsample_labels(label_map, 2**self.n_local))

    def global_parameters(self) -> list[nn.Parameter]:
        return list(self.global_generator.parameters())

    def local_parameters(self) -> list[nn.Parameter]:
        return list(self.local_enhancers.parameters())

    @property
    def alphas(self) -> list[Tensor]:
        """Detached alpha ``(B, 1, 1, 1)`` of each enhancer from the last forward (empty for "sum"/n_local=0)."""
        return [e.last_alpha for e in self.local_enhancers if e.last_alpha is not None]


# --- discriminators and feature matching -------------------------------------------------------


def _maybe_spectral(module: nn.Module, spectral: bool) -> nn.Module:
    return _spectral_norm(module) if spectral else module


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(B, in_channels, H, W)`` -> list of each block's activation, last = logits ``(B, 1, h, w)``.

    4x4 convs: stride 2 for the first ``n_layers`` (widths ``width * min(2**i, 8)``), one
    stride-1 conv, then a stride-1 1-channel output conv; LeakyReLU 0.2; normalisation on all but
    the first and last conv. ``n_layers + 2`` tensors are returned.

    Args:
        norm: ``"instance"`` (pix2pixHD, affine=False, conv bias), ``"batch"`` (pix2pix,
            normalised convs without bias), ``"none"``.
        spectral: spectral norm on the normalised convs (SPADE's discriminator).
        padding: 2 in pix2pixHD / SPADE (``ceil(3 / 2)``), 1 in pix2pix. Parameter counts do not
            depend on it; spatial sizes do (``out = floor((n + 2p - 4) / s) + 1`` per conv).
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        spectral: bool = False,
        padding: int = 2,
    ) -> None:
        super().__init__()
        _check_choice("norm", norm, DISCRIMINATOR_NORMS)
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        channels = [width * min(2**i, 8) for i in range(n_layers + 1)]
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, channels[0], 4, stride=2, padding=padding), nn.LeakyReLU(0.2))]
        for i in range(1, n_layers + 1):
            conv = nn.Conv2d(channels[i - 1], channels[i], 4, stride=2 if i < n_layers else 1, padding=padding, bias=norm != "batch")
            layers: list[nn.Module] = [_maybe_spectral(conv, spectral)]
            if norm == "instance":
                layers.append(nn.InstanceNorm2d(channels[i]))
            elif norm == "batch":
                layers.append(nn.BatchNorm2d(channels[i]))
            layers.append(nn.LeakyReLU(0.2))
            blocks.append(nn.Sequential(*layers))
        blocks.append(nn.Sequential(nn.Conv2d(channels[-1], 1, 4, stride=1, padding=padding)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``n_scales`` PatchGANs on ``x``, ``downsample(x, 2)``, ...: returns ``[feats_scale0, ...]``, 0 = full res.

    Input: label map concatenated with the image, ``(B, L + C, H, W)``. Arguments as in
    :class:`PatchDiscriminator` (``padding`` 2 = pix2pixHD).
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 64,
        n_layers: int = 3,
        n_scales: int = 2,
        norm: str = "instance",
        spectral: bool = False,
        padding: int = 2,
    ) -> None:
        super().__init__()
        if n_scales < 1:
            raise ValueError(f"n_scales must be >= 1, got {n_scales}")
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(in_channels, width, n_layers, norm, spectral, padding) for _ in range(n_scales)
        )

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        out = []
        for i, discriminator in enumerate(self.discriminators):
            if i:
                x = downsample(x, 2)
            out.append(discriminator(x))
        return out


class DFMWeighting(nn.Module):
    """Seed 001's DFM net: a feature ``(B, in_channels, h, w)`` -> per-scale FM weights ``(B, n_scales)``.

    2 x (conv 3x3 stride 2 + LeakyReLU 0.2) at ``hidden`` channels, global average pooling,
    FC to ``n_scales`` logits, softmax over scales (computed in at least float32). For 2 scales
    the row is ``(beta, 1 - beta)``. Weights lie in ``[1e-6, 1 - 1e-6]`` and rows sum to 1
    (a single scale always gets weight 1).
    """

    def __init__(self, in_channels: int, n_scales: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.n_scales = n_scales
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.fc = nn.Linear(hidden, n_scales)

    def forward(self, feature: Tensor) -> Tensor:
        logits = self.fc(self.convs(feature).mean(dim=(2, 3)))
        return _open_unit(torch.softmax(_at_least_float32(logits), dim=1), self.n_scales)


def per_scale_feature_matching(real_feats: list[list[Tensor]], fake_feats: list[list[Tensor]]) -> Tensor:
    """``FM_bs`` ``(B, n_scales)``: per sample, the mean over scale ``s``'s intermediate layers of the mean L1.

    Real features are detached; the final logit map of each scale is not matched.
    """
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"need the same non-zero number of scales, got {len(real_feats)} real and {len(fake_feats)} fake")
    per_scale = []
    for real, fake in zip(real_feats, fake_feats):
        if len(real) != len(fake) or len(real) < 2:
            raise ValueError("each scale needs the same number (>= 2) of real and fake feature maps")
        layers = [(f - r.detach()).abs().flatten(1).mean(1) for r, f in zip(real[:-1], fake[:-1])]
        per_scale.append(torch.stack(layers, 0).mean(0))
    return torch.stack(per_scale, 1)


def feature_matching_loss(
    real_feats: list[list[Tensor]],
    fake_feats: list[list[Tensor]],
    weights: Tensor | None = None,
) -> Tensor:
    """Multi-scale discriminator feature matching; real features are detached.

    ``FM_s`` = mean over the intermediate layers of scale ``s`` (all but the final logit map) of
    the mean absolute difference. Per sample ``b``: ``sum_s w_bs * FM_bs``, averaged over the
    batch. ``weights`` None means ``w = 1`` (plain sum over scales); ``(n_scales,)`` or
    ``(B, n_scales)`` weights (e.g. :class:`DFMWeighting`) give the DFM form, so
    ``weights = (0.5, 0.5)`` is half the unweighted loss. pix2pixHD's term equals
    ``lambda_feat * 4 / n_scales * (this, unweighted)`` for ``n_layers = 3``.
    """
    fm = per_scale_feature_matching(real_feats, fake_feats)
    if weights is None:
        return fm.sum(1).mean()
    if weights.shape not in ((fm.shape[1],), tuple(fm.shape)):
        raise ValueError(f"weights must have shape ({fm.shape[1]},) or {tuple(fm.shape)}, got {tuple(weights.shape)}")
    return (fm * weights).sum(1).mean()


# --- pix2pix U-Net -------------------------------------------------------------------------------


class UNetGenerator(nn.Module):
    """pix2pix U-Net: ``(B, label_channels, S, S)`` -> ``(B, out_channels, S, S)`` in [-1, 1].

    ``n_down`` 4x4 stride-2 convs (widths ``width * min(2**i, 8)``; LeakyReLU 0.2 before all but
    the first, BatchNorm after all but the first and the innermost), mirrored by ReLU +
    transposed convs + BatchNorm (tanh at the output), skip connections by concatenation, dropout
    0.5 in the ``n_down - 5`` decoder blocks after the innermost (3 for ``unet_256``). Convs are
    bias-free except the output transposed conv, exactly as pix2pix with BatchNorm.
    ``S`` must be divisible by ``2**n_down``.
    """

    def __init__(self, label_channels: int, out_channels: int = 1, width: int = 64, n_down: int = 8, dropout: bool = True) -> None:
        super().__init__()
        if n_down < 2:
            raise ValueError(f"n_down must be >= 2, got {n_down}")
        self.n_down = n_down
        ch = [width * min(2**i, 8) for i in range(n_down)]
        down: list[nn.Module] = [nn.Conv2d(label_channels, ch[0], 4, stride=2, padding=1, bias=False)]
        for i in range(1, n_down):
            layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(ch[i - 1], ch[i], 4, stride=2, padding=1, bias=False)]
            if i < n_down - 1:
                layers.append(nn.BatchNorm2d(ch[i]))
            down.append(nn.Sequential(*layers))
        up: list[nn.Module] = [
            nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * ch[0], out_channels, 4, stride=2, padding=1), nn.Tanh())
        ]
        for i in range(1, n_down):
            c_in = ch[i] if i == n_down - 1 else 2 * ch[i]
            layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, ch[i - 1], 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(ch[i - 1])]
            if dropout and 4 <= i <= n_down - 2:
                layers.append(nn.Dropout(0.5))
            up.append(nn.Sequential(*layers))
        self.down = nn.ModuleList(down)
        self.up = nn.ModuleList(up)  # up[i] mirrors down[i]

    def forward(self, label_map: Tensor) -> Tensor:
        factor = 2**self.n_down
        h, w = label_map.shape[-2:]
        if h % factor or w % factor:
            raise ValueError(f"UNetGenerator with n_down={self.n_down} needs a side divisible by 2**{self.n_down} = {factor}, got {h}x{w}")
        skips = []
        x = label_map
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[-1](skips[-1])
        for i in range(self.n_down - 2, -1, -1):
            x = self.up[i](torch.cat([skips[i], x], dim=1))
        return x


# --- SPADE ---------------------------------------------------------------------------------------


def _param_free_norm(kind: str, channels: int) -> nn.Module:
    _check_choice("norm", kind, PARAM_FREE_NORMS)
    return nn.InstanceNorm2d(channels, affine=False) if kind == "instance" else nn.BatchNorm2d(channels, affine=False)


class SPADEModulation(nn.Module):
    """Label map ``(B, L, H, W)`` (already at the target size) -> ``(gamma, beta)``, each ``(B, C, H, W)``.

    Shared 3x3 conv + ReLU to ``hidden`` channels, then one 3x3 conv each for gamma and beta.
    """

    def __init__(self, out_channels: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, label_map: Tensor) -> tuple[Tensor, Tensor]:
        h = self.shared(label_map)
        return self.gamma(h), self.beta(h)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``norm(x) * (1 + gamma) + beta``; ``x`` ``(B, C, H, W)``.

    ``norm`` is parameter-free (``"instance"`` or ``"batch"``); gamma/beta come from the label map
    nearest-resized to ``x``'s size.
    """

    def __init__(self, norm_channels: int, label_channels: int, hidden: int = 128, norm: str = "instance") -> None:
        super().__init__()
        self.norm = _param_free_norm(norm, norm_channels)
        self.modulation = SPADEModulation(norm_channels, label_channels, hidden)

    def forward(self, x: Tensor, label_map: Tensor) -> Tensor:
        gamma, beta = self.modulation(_resize_labels(label_map, x.shape[-2:]))
        return self.norm(x) * (1 + gamma) + beta


class _ModulatedResBlock(nn.Module):
    """(norm, LeakyReLU 0.2, 3x3 conv) x 2 plus a shortcut (norm + 1x1 conv, no bias, when channels change).

    ``make_norm(channels)`` builds the conditional norm; ``forward(x, *cond)`` passes ``cond`` to it.
    The middle width is ``min(in_channels, out_channels)`` as in SPADE.
    """

    def __init__(self, in_channels: int, out_channels: int, make_norm: Callable[[int], nn.Module], spectral: bool) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        self.norm_0 = make_norm(in_channels)
        self.conv_0 = _maybe_spectral(nn.Conv2d(in_channels, middle, 3, padding=1), spectral)
        self.norm_1 = make_norm(middle)
        self.conv_1 = _maybe_spectral(nn.Conv2d(middle, out_channels, 3, padding=1), spectral)
        self.learned_shortcut = in_channels != out_channels
        if self.learned_shortcut:
            self.norm_s = make_norm(in_channels)
            self.conv_s = _maybe_spectral(nn.Conv2d(in_channels, out_channels, 1, bias=False), spectral)

    def forward(self, x: Tensor, *cond: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, *cond)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, *cond), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, *cond), 0.2))
        return shortcut + dx


class SPADEResBlock(_ModulatedResBlock):
    """SPADE residual block: ``(x (B, in, H, W), label_map (B, L, H', W'))`` -> ``(B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, label_channels: int, hidden: int = 128,
                 spectral: bool = True, norm: str = "instance") -> None:
        super().__init__(in_channels, out_channels, lambda c: SPADE(c, label_channels, hidden, norm), spectral)


def _decoder_channels(width: int, n_up: int) -> list[int]:
    """Output widths of the SPADE decoder blocks: 16w (head, middle_0, middle_1, ...), then 8w, 4w, 2w, w."""
    return [16 * width] * max(3, n_up - 3) + [8 * width, 4 * width, 2 * width, width]


def _upsample_before(n_blocks: int, n_up: int) -> frozenset[int]:
    """Blocks preceded by a 2x nearest upsampling: block 1 (middle_0) and the last ``n_up - 1`` blocks.

    For ``n_up = 5`` this is SPADE's "normal" layout (head | middle_0, middle_1 | up_0 | ... | up_3),
    for 6 its "more" layout; fewer upsamplings keep more blocks at the first upsampled size.
    """
    return frozenset({1, *range(n_blocks - n_up + 1, n_blocks)})


class _ModulatedGenerator(nn.Module):
    """Shared SPADE/SEAN decoder: label map -> nearest-downsampled by ``2**n_up`` -> 3x3 conv -> blocks -> image."""

    def __init__(self, label_channels: int, out_channels: int, width: int, image_size: int, n_up: int,
                 make_block: Callable[[int, int], nn.Module]) -> None:
        super().__init__()
        if n_up < 1:
            raise ValueError(f"n_up must be >= 1, got {n_up}")
        if image_size % 2**n_up:
            raise ValueError(f"image_size {image_size} is not divisible by 2**n_up = {2**n_up}")
        self.image_size = image_size
        self.base = image_size // 2**n_up
        if self.base < 2:
            raise ValueError(f"image_size / 2**n_up = {self.base}: the first block needs at least 2x2 pixels to normalise; lower n_up")
        channels = _decoder_channels(width, n_up)
        self.upsample_before = _upsample_before(len(channels), n_up)
        self.fc = nn.Conv2d(label_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(make_block(c_in, c_out) for c_in, c_out in zip([channels[0], *channels[:-1]], channels))
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(channels[-1], out_channels, 3, padding=1), nn.Tanh())

    def _decode(self, label_map: Tensor, *cond: Tensor) -> Tensor:
        if tuple(label_map.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"label map must be {self.image_size}x{self.image_size}, got {tuple(label_map.shape[-2:])}")
        x = self.fc(F.interpolate(label_map, size=(self.base, self.base), mode="nearest"))
        for j, block in enumerate(self.blocks):
            if j in self.upsample_before:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, label_map, *cond)
        return self.head(x)


class SPADEGenerator(_ModulatedGenerator):
    """SPADE generator (no VAE): ``(B, L, S, S)`` one-hot -> ``(B, out_channels, S, S)`` in [-1, 1].

    ``S = image_size``; starts at ``S / 2**n_up`` with ``16 * width`` channels; blocks output
    16w, 16w, 16w, 8w, 4w, 2w, w (more 16w blocks when ``n_up > 6``); LeakyReLU, 3x3 conv, tanh.
    """

    def __init__(self, label_channels: int, out_channels: int = 1, width: int = 64, image_size: int = 256, n_up: int = 5,
                 hidden: int = 128, spectral: bool = True, norm: str = "instance") -> None:
        super().__init__(label_channels, out_channels, width, image_size, n_up,
                         lambda c_in, c_out: SPADEResBlock(c_in, c_out, label_channels, hidden, spectral, norm))

    def forward(self, label_map: Tensor) -> Tensor:
        return self._decode(label_map)


# --- SEAN ----------------------------------------------------------------------------------------


def region_average(features: Tensor, onehot: Tensor) -> Tensor:
    """Per-region mean of ``features (B, D, H, W)`` under ``onehot (B, L, H', W')`` -> ``(B, L, D)``.

    The map is nearest-resized to the features' size; absent regions get exactly zero.
    """
    masks = _resize_labels(onehot, features.shape[-2:]).to(features.dtype)
    sums = torch.einsum("bdhw,blhw->bld", features, masks)
    area = masks.sum(dim=(2, 3)).unsqueeze(-1)
    return sums / area.clamp_min(WEIGHT_EPS)


class RegionwiseLinear(nn.Module):
    """One linear layer per region: ``(B, L, in_features)`` -> ``(B, L, out_features)``."""

    def __init__(self, n_regions: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_regions, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_regions, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per region
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bli,loi->blo", x, self.weight) + self.bias


class StyleEncoder(nn.Module):
    """SEAN style encoder: ``(image (B, C, H, W), label_map (B, L, H, W))`` -> style codes ``(B, L, style_dim)``.

    Conv encoder-decoder (3x3 conv, 2 stride-2 convs, 2 transposed convs, 3x3 conv + tanh; IN +
    LeakyReLU 0.2 between) to a ``style_dim`` map at image resolution, then region-wise average
    pooling per label channel. ``H`` must be divisible by 4.
    """

    def __init__(self, image_channels: int, label_channels: int, style_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.label_channels = label_channels

        def act(c: int) -> list[nn.Module]:
            return [nn.InstanceNorm2d(c), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            nn.Conv2d(image_channels, width, 3, padding=1, padding_mode="reflect"), *act(width),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), *act(2 * width),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), *act(4 * width),
            nn.ConvTranspose2d(4 * width, 2 * width, 3, stride=2, padding=1, output_padding=1), *act(2 * width),
            nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1), *act(width),
            nn.Conv2d(width, style_dim, 3, padding=1, padding_mode="reflect"), nn.Tanh(),
        )

    def forward(self, image: Tensor, label_map: Tensor) -> Tensor:
        if label_map.shape[1] != self.label_channels:
            raise ValueError(f"expected {self.label_channels} label channels, got {label_map.shape[1]}")
        return region_average(self.net(image), label_map)


class SEANNorm(nn.Module):
    """SEAN normalisation: ``norm(x) * (1 + gamma) + beta`` with style- and label-derived modulation.

    ``forward(x (B, C, H, W), label_map (B, L, H', W'), style_codes (B, L, style_dim))``. Each
    layer projects the codes per region (FC per label + ReLU), broadcasts them into their regions
    of the resized label map, and convolves (3x3) to ``gamma_s, beta_s``; SPADE gives
    ``gamma_o, beta_o``; ``gamma = a_g gamma_s + (1 - a_g) gamma_o``, ``a_g = sigmoid(blend_gamma)``
    (same for beta; both blends start at 0.5). SEAN's per-pixel noise input is not included.
    """

    def __init__(self, norm_channels: int, label_channels: int, style_dim: int = 64, hidden: int = 128, norm: str = "instance") -> None:
        super().__init__()
        self.norm = _param_free_norm(norm, norm_channels)
        self.label_modulation = SPADEModulation(norm_channels, label_channels, hidden)
        self.style_projection = RegionwiseLinear(label_channels, style_dim, style_dim)
        self.style_gamma = nn.Conv2d(style_dim, norm_channels, 3, padding=1)
        self.style_beta = nn.Conv2d(style_dim, norm_channels, 3, padding=1)
        self.blend_gamma = nn.Parameter(torch.zeros(1))
        self.blend_beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, label_map: Tensor, style_codes: Tensor) -> Tensor:
        masks = _resize_labels(label_map, x.shape[-2:])
        gamma_o, beta_o = self.label_modulation(masks)
        codes = F.relu(self.style_projection(style_codes))
        style_map = torch.einsum("bld,blhw->bdhw", codes, masks.to(codes.dtype))
        a_g, a_b = torch.sigmoid(self.blend_gamma), torch.sigmoid(self.blend_beta)
        gamma = a_g * self.style_gamma(style_map) + (1 - a_g) * gamma_o
        beta = a_b * self.style_beta(style_map) + (1 - a_b) * beta_o
        return self.norm(x) * (1 + gamma) + beta


class SEANResBlock(_ModulatedResBlock):
    """SPADE residual block with :class:`SEANNorm`: ``(x, label_map, style_codes)`` -> ``(B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, label_channels: int, style_dim: int = 64, hidden: int = 128,
                 spectral: bool = True, norm: str = "instance") -> None:
        super().__init__(in_channels, out_channels, lambda c: SEANNorm(c, label_channels, style_dim, hidden, norm), spectral)


class SEANGenerator(_ModulatedGenerator):
    """SEAN generator: SPADE's decoder with SEAN blocks; ``forward(label_map, style_codes)`` -> image in [-1, 1].

    ``encode_styles(image, label_map)`` gives the ``(B, L, style_dim)`` codes (zero for absent
    regions) with the built-in :class:`StyleEncoder` (``encoder_width`` channels).
    """

    def __init__(self, label_channels: int, out_channels: int = 1, width: int = 64, image_size: int = 256, n_up: int = 5,
                 hidden: int = 128, style_dim: int = 64, spectral: bool = True, norm: str = "instance",
                 encoder_width: int = 32) -> None:
        super().__init__(label_channels, out_channels, width, image_size, n_up,
                         lambda c_in, c_out: SEANResBlock(c_in, c_out, label_channels, style_dim, hidden, spectral, norm))
        self.style_dim = style_dim
        self.style_encoder = StyleEncoder(out_channels, label_channels, style_dim, encoder_width)

    def encode_styles(self, image: Tensor, label_map: Tensor) -> Tensor:
        return self.style_encoder(image, label_map)

    def forward(self, label_map: Tensor, style_codes: Tensor) -> Tensor:
        expected = (label_map.shape[0], label_map.shape[1], self.style_dim)
        if tuple(style_codes.shape) != expected:
            raise ValueError(f"style_codes must have shape {expected}, got {tuple(style_codes.shape)}")
        return self._decode(label_map, style_codes)


# --- initialisation ------------------------------------------------------------------------------


def init_weights_(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix(HD) init in place: conv/linear weights N(0, gain), biases 0, affine norm weights N(1, gain).

    Spectrally normalised (parametrized) weights keep PyTorch's default init (their biases are
    still zeroed); SEAN blend scalars are left at 0 (blend 0.5).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, RegionwiseLinear)):
            if not parametrize.is_parametrized(m, "weight"):
                nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
