"""Feature extractors for FID / KID: a small domain CNN trained in the pipeline, or a user's Inception-v3.

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

"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lungsynth.errors import InputDataError


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
