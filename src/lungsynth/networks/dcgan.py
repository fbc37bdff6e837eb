"""Seed 000's DCGAN (Mann et al.): FC + transposed-conv generator, mirrored conv discriminator.

Paper architecture at 224x224x3: z (100) -> FC to 3072x7x7 -> ConvTranspose 4x4
stride 2 (BN + ReLU) through 1536x14, 768x28, 384x56, 192x112 -> 3x224 + Tanh;
the discriminator mirrors it with Conv 4x4 stride 2 + BN + LeakyReLU(0.2) and a
dense output. That is ``generator_widths = (3072, 1536, 768, 384, 192)``.
The paper's parameter counts (~30 M G, ~5 M D) do not match those widths, so
widths are constructor arguments; see the README for the counts of each reading.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


def _base_size(image_size: int, n_upsamplings: int) -> int:
    factor = 2**n_upsamplings
    if image_size % factor:
        raise ValueError(f"image_size {image_size} is not divisible by 2^{n_upsamplings} = {factor}")
    return image_size // factor


class DCGANGenerator(nn.Module):
    """Map latent vectors ``(B, latent_dim)`` to images ``(B, out_channels, S, S)`` in [-1, 1].

    Args:
        latent_dim: length of z.
        out_channels: 1 (grayscale) or 3 (RGB).
        image_size: output side S; must equal ``base * 2**len(widths)``.
        widths: channels after the FC layer, then after each upsampling block but
            the last (which maps to ``out_channels``). ``len(widths)`` upsamplings.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        out_channels: int = 3,
        image_size: int = 224,
        widths: Sequence[int] = (3072, 1536, 768, 384, 192),
    ) -> None:
        super().__init__()
        widths = list(widths)
        self.latent_dim = latent_dim
        self.base = _base_size(image_size, len(widths))
        self.first_width = widths[0]
        self.project = nn.Sequential(
            nn.Linear(latent_dim, widths[0] * self.base * self.base, bias=False),
        )
        self.project_norm = nn.Sequential(nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks += [
                nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        blocks += [nn.ConvTranspose2d(widths[-1], out_channels, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        self.upsample = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.first_width, self.base, self.base)
        return self.upsample(self.project_norm(x))


class DCGANDiscriminator(nn.Module):
    """Map images ``(B, in_channels, S, S)`` in [-1, 1] to real/fake logits ``(B,)``.

    The paper's dense + sigmoid output is kept as a dense layer producing a logit;
    the sigmoid lives in the loss (``BCEWithLogitsLoss``), which is the same
    objective computed stably.

    Args:
        in_channels: 1 or 3.
        image_size: input side S; must be divisible by ``2**len(widths)``.
        widths: channels after each stride-2 4x4 conv (BN on all but the first).
        spectral_norm: spectral norm on every conv and the dense layer instead of BN (not the
            paper's). With BN, real and generated batches are normalised by their own batch
            statistics, so a shift shared by a whole generated batch (brightness, texture) is
            hidden from the critic.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 224,
        widths: Sequence[int] = (192, 384, 768, 1536, 3072),
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        base = _base_size(image_size, len(widths))
        wrap = _spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        c_in = in_channels
        for index, c_out in enumerate(widths):
            normalised = index > 0 and not spectral_norm
            layers.append(wrap(nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=not normalised)))
            if normalised:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classify = wrap(nn.Linear(widths[-1] * base * base, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x).flatten(1)).squeeze(1)


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al.): conv/linear weights N(0, 0.02), BN weights N(1, 0.02).

    Spectrally normalised (parametrized) layers keep PyTorch's default init: their scale is
    normalised anyway.
    """
    from torch.nn.utils import parametrize

    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not parametrize.is_parametrized(m, "weight"):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
