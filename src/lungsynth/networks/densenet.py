"""DenseNet-169 COVID classifier (the COVID-CT baseline seed 000 validated with).

torchvision's DenseNet-169, randomly initialised by default (nothing is ever
downloaded); a user may name a state_dict file of an ImageNet DenseNet-169,
whose 1000-class head is then replaced. Inputs are lungsynth tensors in [-1, 1]
with 1 or 3 channels; grayscale is replicated to 3 channels and ImageNet
normalisation applied inside the module, so pretrained weights see what they expect.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DenseNetClassifier(nn.Module):
    """``(B, C, H, W)`` images in [-1, 1] -> class logits ``(B, num_classes)``.

    Args:
        num_classes: number of classes (index order is the caller's, kept with the checkpoint).
        weights: optional path to a torchvision ``densenet169`` state_dict (1000-class head
            or ``num_classes`` head); loaded with ``weights_only=True``.
    """

    def __init__(self, num_classes: int = 2, weights: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import densenet169

        self.net = densenet169(weights=None)
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            head = state.get("classifier.weight")
            if head is not None and head.shape[0] == num_classes:
                self.net.classifier = nn.Linear(self.net.classifier.in_features, num_classes)
                self.net.load_state_dict(state)
            else:
                self.net.load_state_dict(state)
                self.net.classifier = nn.Linear(self.net.classifier.in_features, num_classes)
        else:
            self.net.classifier = nn.Linear(self.net.classifier.in_features, num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.net(x)
