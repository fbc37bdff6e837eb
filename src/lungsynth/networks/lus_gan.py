"""Seed 003's lung-ultrasound GAN: transposed-conv generator and a PACGAN discriminator.

Paper configuration (greyscale 256x256, latent 128), after RaGAN appendix D.3:

- ``LUSGenerator``: z -> ConvTranspose 4x4 (stride 1, from 1x1 to 4x4) to 1024 channels, then
  ConvTranspose 4x4 stride 2 through 512@8, 256@16, 128@32, 64@64, 32@128, 16@256, each block
  BN + ReLU (+ dropout), then a 3x3 conv to ``out_channels`` and Tanh. The paper's table ends
  the stack at "32->16 + Tanh", which cannot be an image with 1 channel; the final 3x3 conv
  maps the last width to the image channels.
- ``ImprovedLUSGenerator``: the paper's proposed (untested) variant: SELU activations (no BN),
  nearest upsampling + 3x3 conv instead of transposed convs, spectral norm on every conv,
  alpha dropout (dropout that preserves SELU's self-normalisation).
- ``PackedDiscriminator``: PACGAN-k (Lin et al., 2018): ``pack`` consecutive samples are
  concatenated on channels, then Conv 4x4 stride 2 + LeakyReLU(0.2) per width (BN from the
  third conv on, as in the paper's table, or spectral norm on all convs), and a final conv
  whose kernel covers the remaining ``S / 2**len(widths)`` square gives one logit per pack.
  All convs are bias-free as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from lungsynth.networks.minibatch_std import MinibatchStdDev

PAPER_GENERATOR_WIDTHS = (1024, 512, 256, 128, 64, 32, 16)
PAPER_DISCRIMINATOR_WIDTHS = (16, 32, 64, 128, 256, 512)


def _n_upsamplings(image_size: int, widths: Sequence[int]) -> int:
    """Number of stride-2 upsamplings from the 4x4 projection to ``image_size``; validates widths."""
    k = 0
    while 4 * 2**k < image_size:
        k += 1
    if image_size < 4 or 4 * 2**k != image_size:
        raise ValueError(f"image_size must be 4 * 2**k (4, 8, ..., 64, 128, 256, ...), got {image_size}")
    if len(widths) != k + 1:
        raise ValueError(
            f"generator widths must have {k + 1} entries for image_size {image_size} "
            f"(4x4 projection + {k} upsamplings), got {len(widths)}: {tuple(widths)}"
        )
    return k


class _GeneratorBase(nn.Module):
    """z -> 4x4 projection block -> one block per stride-2 upsampling -> 3x3 conv to the image channels -> Tanh.

    Subclasses choose the blocks (:meth:`projection`, :meth:`upsampling`); the arguments are those of
    :class:`LUSGenerator`.
    """

    latent_dim: int

    def __init__(
        self,
        latent_dim: int = 128,
        out_channels: int = 1,
        image_size: int = 256,
        widths: Sequence[int] = PAPER_GENERATOR_WIDTHS,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        _n_upsamplings(image_size, widths)
        self.latent_dim = latent_dim
        layers = self.projection(latent_dim, widths[0], dropout)
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += self.upsampling(c_in, c_out, dropout)
        layers += [nn.Conv2d(widths[-1], out_channels, kernel_size=3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    @staticmethod
    def projection(latent_dim: int, width: int, dropout: float) -> list[nn.Module]:
        """Layers from ``(B, latent_dim, 1, 1)`` to ``(B, width, 4, 4)``."""
        raise NotImplementedError

    @staticmethod
    def upsampling(c_in: int, c_out: int, dropout: float) -> list[nn.Module]:
        """Layers from ``(B, c_in, s, s)`` to ``(B, c_out, 2s, 2s)``."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` (or ``(B, latent_dim, 1, 1)``) -> ``(B, C, S, S)`` in [-1, 1]."""
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class LUSGenerator(_GeneratorBase):
    """Seed 003's generator: z -> transposed-conv stack with BN + ReLU (+ dropout) -> Tanh.

    Args:
        latent_dim: length of z.
        out_channels: image channels (1 greyscale, 3 RGB).
        image_size: output side S = 4 * 2**k.
        widths: channels of the 4x4 projection, then after each of the k upsamplings;
            ``len(widths)`` must be k + 1 (7 for 256 px).
        dropout: dropout probability after every block (0 disables).
    """

    @staticmethod
    def projection(latent_dim: int, width: int, dropout: float) -> list[nn.Module]:
        conv = nn.ConvTranspose2d(latent_dim, width, kernel_size=4, stride=1, padding=0, bias=False)
        return [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.Dropout(dropout)]

    @staticmethod
    def upsampling(c_in: int, c_out: int, dropout: float) -> list[nn.Module]:
        conv = nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False)
        return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.Dropout(dropout)]


class ImprovedLUSGenerator(_GeneratorBase):
    """Seed 003's "improved" generator: SELU, nearest upsample + 3x3 conv, spectral norm.

    Same arguments and output as :class:`LUSGenerator`; no BN (SELU self-normalises),
    ``nn.AlphaDropout`` instead of dropout. The 4x4 projection stays a transposed conv
    from 1x1; the output conv (to the image channels) is not spectrally normalised.
    """

    @staticmethod
    def projection(latent_dim: int, width: int, dropout: float) -> list[nn.Module]:
        conv = _spectral_norm(nn.ConvTranspose2d(latent_dim, width, kernel_size=4, stride=1, padding=0))
        return [conv, nn.SELU(inplace=True), nn.AlphaDropout(dropout)]

    @staticmethod
    def upsampling(c_in: int, c_out: int, dropout: float) -> list[nn.Module]:
        conv = _spectral_norm(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        return [nn.Upsample(scale_factor=2, mode="nearest"), conv, nn.SELU(inplace=True), nn.AlphaDropout(dropout)]


class PackedDiscriminator(nn.Module):
    """PACGAN-k critic: ``(B, C, S, S)`` in [-1, 1] -> raw logits ``(B // pack,)``.

    Samples ``pack*i .. pack*i + pack - 1`` of the batch form pack ``i`` (concatenated
    on channels, sample order = channel-block order).

    Args:
        in_channels: image channels C (the first conv sees ``pack * C``).
        image_size: input side S; must be divisible by ``2**len(widths)``.
        widths: channels after each 4x4 stride-2 conv.
        pack: samples per critic decision; 1 disables packing.
        spectral_norm: spectral norm on every conv instead of BN.
        minibatch_std: groups of packs over which a :class:`~lungsynth.networks.minibatch_std.MinibatchStdDev`
            channel is added before the final conv (0 = off, the paper's critic).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        widths: Sequence[int] = PAPER_DISCRIMINATOR_WIDTHS,
        pack: int = 2,
        spectral_norm: bool = False,
        minibatch_std: int = 0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if pack < 1:
            raise ValueError(f"pack must be >= 1, got {pack}")
        if not widths:
            raise ValueError("discriminator widths must not be empty")
        factor = 2 ** len(widths)
        if image_size % factor:
            raise ValueError(
                f"image_size {image_size} is not divisible by 2**len(discriminator widths) = {factor}; "
                f"use fewer widths ({len(widths)} given)"
            )
        self.pack = pack
        self.in_channels = in_channels
        wrap = _spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = pack * in_channels
        for index, c_out in enumerate(widths):
            layers.append(wrap(nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False)))
            if index >= 2 and not spectral_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        base = image_size // factor
        if minibatch_std:
            layers.append(MinibatchStdDev(minibatch_std))
            c_in += 1
        layers.append(wrap(nn.Conv2d(c_in, 1, kernel_size=base, stride=1, padding=0, bias=False)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if batch % self.pack:
            raise ValueError(
                f"batch size {batch} is not divisible by pack={self.pack}; "
                "trim the batch to a multiple of pack before calling the discriminator"
            )
        packed = x.reshape(batch // self.pack, self.pack * channels, height, width)
        return self.net(packed).flatten()
