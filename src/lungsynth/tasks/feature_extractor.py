"""Training, saving and applying the domain feature extractor of the FID / KID measures.

:class:`lungsynth.networks.feature_extractor.DomainFeatureExtractor` learns, on the real training
slices, the tissue label of each 16x16 cell (class-weighted cross-entropy); its pooled activations are
the features :mod:`lungsynth.metrics.distribution` compares. Training runs on the shared loop of
:mod:`lungsynth.engine` (per-epoch checkpoints, exact resume).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lungsynth.artifacts import torch_load, torch_save
from lungsynth.data.preprocess import decode_uint8, uint8_image_batch
from lungsynth.data.segmentation import label_map_batch
from lungsynth.engine import Step, TrainingLoop, Value, run_fingerprint, select_device
from lungsynth.errors import InputDataError
from lungsynth.networks.feature_extractor import DomainFeatureExtractor
from lungsynth.runlog import progress_bar

log = logging.getLogger(__name__)


MAX_CLASS_WEIGHT = 10.0


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

    x_all = uint8_image_batch(images)
    y_all = label_map_batch(labels, x_all)
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


@torch.no_grad()
def extract_features(extractor: nn.Module, images, batch_size: int = 64, device: str = "cpu",
                     progress: bool = False) -> np.ndarray:
    """``extractor.features`` of uint8 ``(N, C, S, S)`` images decoded to [-1, 1]: float64 ``(N, D)``.

    Moves ``extractor`` to ``device`` and sets it to eval mode (in place).
    """
    x = uint8_image_batch(images)
    dev = select_device(device)
    extractor.to(dev).eval()
    out = []
    starts = range(0, len(x), batch_size)
    for i in progress_bar(starts, desc="features", unit="batch", disable=not progress):
        out.append(extractor.features(decode_uint8(x[i : i + batch_size]).to(dev)).double().cpu())
    if not out:
        return np.zeros((0, int(extractor.feature_dim)))
    return torch.cat(out).numpy()
