"""U-Net training and prediction for the downstream segmentation study (seed 001's Tables III/IV).

Targets: 0 = background (label-map values 0 outside lung and 1 lung), 1 = ground-glass (2),
2 = consolidation (3). Loss: cross-entropy + ``dice_weight`` x soft Dice. Batch order from
``(seed, epoch)`` and flips from ``(seed, step)``, so a resumed job ends bit-identical.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lungsynth.tasks.classifier import recalibrate_batchnorm
from lungsynth.artifacts import torch_load, torch_save
from lungsynth.networks.unet import UNet
from lungsynth.engine import LoopSettings, epoch_batches, Step, TrainingLoop, run_fingerprint
from lungsynth.data.preprocess import decode_uint8

log = logging.getLogger(__name__)

N_CLASSES = 3
LOSS_COLUMNS = ("step", "epoch", "loss", "ce", "dice")


def segmentation_target(labels: torch.Tensor) -> torch.Tensor:
    """Label maps uint8 ``(N, S, S)`` (0..3) -> int64 class indices 0 bg, 1 ground-glass, 2 consolidation.

    Values outside 0..3 are a ``ValueError`` naming them.
    """
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"label maps must be integers 0..3, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 3):
        unknown = [v for v in labels.unique().tolist() if not 0 <= v <= 3]
        raise ValueError(f"label maps hold unknown values {unknown}; expected 0..3")
    return (labels - 1).clamp_min(0)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss: mean over classes of ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``.

    ``p`` = softmax probabilities ``(B, K, H, W)``, ``t`` = one-hot target; sums over batch and pixels.
    """
    probs = torch.softmax(logits.float(), 1)
    onehot = F.one_hot(target, probs.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return (1 - (2 * inter + eps) / (total + eps)).mean()


@dataclass
class UNetSettings(LoopSettings):
    """U-Net training settings (see the config schema)."""

    epochs: int = 10
    lr: float = 1e-3
    dice_weight: float = 1.0
    hflip: bool = True


def train_unet(images: torch.Tensor, labels: torch.Tensor, model_config: dict, settings: UNetSettings,
               work_dir: str | Path, *, progress: bool = True, stop_after: int | None = None) -> dict:
    """Train a U-Net on uint8 images ``(N, 1, S, S)`` and label maps ``(N, S, S)``; resume from ``work_dir``."""
    n = len(images)
    batch, per_epoch = epoch_batches(n, settings.batch_size, "slices for the U-Net")
    loop = TrainingLoop.from_settings(work_dir, settings, total=settings.epochs * per_epoch,
                                      loss_columns=LOSS_COLUMNS, desc="unet", progress=progress, stop_after=stop_after)
    device, precision = loop.device, loop.precision
    loop.seed_torch()
    model = UNet(images.shape[1], N_CLASSES, width=model_config["width"], depth=model_config["depth"]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    targets = segmentation_target(labels)
    loop.resume({"model": model, "optimiser": optimiser},
                run_fingerprint(images, labels, model_config, settings, model))
    order = loop.epoch_order(n, batch, per_epoch)

    def step_fn(step: int) -> Step:
        epoch, rows = order(step)
        x, y = decode_uint8(images[rows]), targets[rows]
        if settings.hflip:
            flip = torch.rand(len(rows), generator=loop.stream(2, step)) < 0.5
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        x, y = x.to(device), y.to(device)
        with precision.autocast():
            logits = model(x)
        ce = F.cross_entropy(logits.float(), y)
        dl = dice_loss(logits, y)
        loss = ce + settings.dice_weight * dl
        optimiser.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(optimiser)
        precision.update()
        values = (loss.item(), ce.item(), dl.item())
        return Step(row=(step, epoch, *(round(v, 6) for v in values)),
                    losses={"loss": values[0], "ce": values[1], "dice": values[2]})

    model.train()
    ended = loop.run(step_fn)
    if ended.stopped:
        return {"stopped_at": ended.step, "resumed_from": ended.resumed_from}
    # Few steps leave BatchNorm's running statistics behind the weights; re-estimate them exactly.
    recalibrate_batchnorm(model, images)
    return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "model_config": dict(model_config),
            "in_channels": images.shape[1], "steps": loop.total, "resumed_from": ended.resumed_from,
            "loss_csv": ended.loss_csv, "device": str(device)}


def save_unet(path: str | Path, result: dict) -> None:
    torch_save(path, {k: result[k] for k in ("state_dict", "model_config", "in_channels", "steps")})


def load_unet(path: str | Path, device: str | torch.device = "cpu") -> UNet:
    state = torch_load(path)
    model = UNet(state["in_channels"], N_CLASSES, width=state["model_config"]["width"],
                 depth=state["model_config"]["depth"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()


@torch.no_grad()
def predict_unet(model: UNet, images: torch.Tensor, batch_size: int = 32, device: str | torch.device = "cpu") -> torch.Tensor:
    """Class indices uint8 ``(N, S, S)`` (0 bg, 1 ground-glass, 2 consolidation) for uint8 images."""
    model.eval()
    out = [model(decode_uint8(images[i : i + batch_size]).to(device)).argmax(1).to(torch.uint8).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)
