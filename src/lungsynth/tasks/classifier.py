"""Training and applying the DenseNet-169 COVID classifier on cached tensors.

Class indices follow the sorted class names stored with the preprocessed data;
the positive class (COVID by default) is looked up by name, never assumed to be
index 1 (the COVID-CT baseline's index trap).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lungsynth.transforms.augment import random_resized_crop_flip
from lungsynth.artifacts import torch_load, torch_save
from lungsynth.metrics.classification import binary_report
from lungsynth.networks.densenet import DenseNetClassifier
from lungsynth.engine import Step, TrainingLoop, Value, run_fingerprint
from lungsynth.runlog import progress_bar
from lungsynth.data.preprocess import decode_uint8

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_proba(model: DenseNetClassifier, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, num_classes)`` for uint8 ``(N, C, S, S)`` images."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for i in range(0, len(images), batch_size):
        batch = decode_uint8(images[i : i + batch_size]).to(device)
        outputs.append(torch.softmax(model(batch).float(), dim=1).cpu())
    if not outputs:
        return np.zeros((0, model.net.classifier.out_features))
    return torch.cat(outputs).numpy()


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> None:
    """Recompute every BatchNorm's running mean/variance as the exact average over ``images``.

    Training from scratch with few steps per epoch leaves the exponential running
    statistics behind the weights, and eval-mode predictions collapse to one class;
    re-estimating them over the (unaugmented) training images fixes that, as SWA's
    ``update_bn`` does. ``images`` are uint8 ``(N, C, S, S)``.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    for i in range(0, len(images), batch_size):
        model(decode_uint8(images[i : i + batch_size]).to(device))
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)


def train_classifier(
    train: dict,
    val: dict,
    *,
    positive_class: str,
    epochs: int = 12,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    weights: str | None = None,
    device: str = "auto",
    amp: bool = True,
    progress: bool = True,
    work_dir: str | Path | None = None,
    stop_after: int | None = None,
) -> tuple[DenseNetClassifier | None, list[dict]]:
    """Train on the ``train`` split; keep the epoch with the best validation AUC.

    ``train`` and ``val`` are loaded split files (see :mod:`lungsynth.data.preprocess`).
    Returns the model (best epoch's weights) and a per-epoch history of
    training loss and validation metrics. With ``work_dir`` every epoch ends in a
    checkpoint there (weights, optimiser, history and the best epoch so far), and a
    rerun resumes from the last one; ``stop_after`` epochs stop the call early as if
    killed (tests), returning ``(None, history so far)``.
    """
    classes = train["classes"]
    if positive_class not in classes:
        raise ValueError(f"positive class '{positive_class}' is not among {classes}")
    positive = classes.index(positive_class)
    loop = TrainingLoop(work_dir, total=epochs, seed=seed, device=device, amp=amp, desc="classifier", unit="epoch",
                        progress=progress, stop_after=stop_after, keep=1)
    dev, precision = loop.device, loop.precision
    loop.seed_torch()
    model = DenseNetClassifier(num_classes=len(classes), weights=weights).to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    images, labels = train["images"], train["labels"]
    n = len(images)
    batch = min(batch_size, n)
    steps = max(1, n // batch)
    history = Value([])
    best = Value({"key": -math.inf, "state": None})
    loop.resume({"model": model, "optimiser": optimiser, "history": history, "best": best},
                run_fingerprint(images, labels, val["images"], val["labels"], classes, positive_class, batch_size,
                                lr, list(crop_scale), weights, model))

    def epoch_fn(epoch: int) -> Step:
        model.train()
        perm = torch.randperm(n, generator=loop.stream(11, epoch))
        running = 0.0
        bar = progress_bar(range(steps), desc=f"classifier epoch {epoch + 1}/{epochs}", unit="step", disable=not progress)
        for index in bar:
            idx = perm[index * batch : (index + 1) * batch]
            x = random_resized_crop_flip(decode_uint8(images[idx]), loop.stream(12, epoch, index),
                                         scale=tuple(crop_scale), hflip=True).to(dev)
            with precision.autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), labels[idx].to(dev))
            optimiser.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(optimiser)
            precision.update()
            running += loss.item()
        bar.close()
        recalibrate_batchnorm(model, images)
        record = {"epoch": epoch + 1, "train_loss": running / steps}
        if len(val["images"]):
            probs = predict_proba(model, val["images"])[:, positive]
            metrics = binary_report((val["labels"] == positive).int().numpy(), probs)
            record.update({f"val_{k}": v for k, v in metrics.items()})
            key = metrics["auc"] if not math.isnan(metrics["auc"]) else metrics["accuracy"]
        else:
            key = -record["train_loss"]
        record = {k: v if isinstance(v, (bool, int, str)) else float(v) for k, v in record.items()}
        if key > best.value["key"]:
            best.value = {"key": float(key), "state": copy.deepcopy(model.state_dict())}
            record["selected"] = True
        history.value.append(record)
        log.info("classifier epoch %d: %s", epoch + 1, record)
        return Step(losses={"train_loss": record["train_loss"]})

    ended = loop.run(epoch_fn)
    if ended.stopped:
        return None, list(history.value)
    model.load_state_dict(best.value["state"])
    return model, list(history.value)


def save_classifier(path: str | Path, model: DenseNetClassifier, classes: list[str], positive_class: str) -> None:
    """Write weights plus the class order and positive class."""
    torch_save(path, {"state_dict": model.state_dict(), "classes": list(classes), "positive_class": positive_class})


def load_classifier(path: str | Path, device: str = "cpu") -> tuple[DenseNetClassifier, list[str], str]:
    """Inverse of :func:`save_classifier`: ``(model, classes, positive_class)``."""
    state = torch_load(path)
    model = DenseNetClassifier(num_classes=len(state["classes"]))
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval(), state["classes"], state["positive_class"]


def fit_and_test_classifier(train: dict, val: dict, test: dict, settings: dict, progress: bool = True,
                            work_dir: str | Path | None = None):
    """``(model, history, metrics)``: train on ``train`` (best validation AUC kept), metrics on ``test``."""
    positive = settings["positive_class"]
    model, history = train_classifier(
        train, val, positive_class=positive, epochs=settings["epochs"], batch_size=settings["batch_size"],
        lr=settings["lr"], seed=settings["seed"], crop_scale=tuple(settings["crop_scale"]),
        weights=settings.get("weights"), device=settings.get("device", "auto"), amp=settings.get("amp", True),
        progress=progress, work_dir=work_dir,
    )
    pos_index = train["classes"].index(positive)
    probabilities = predict_proba(model, test["images"])[:, pos_index]
    metrics = binary_report((test["labels"] == pos_index).int().numpy(), probabilities)
    metrics.update({
        "positive_class": positive,
        "classes": train["classes"],
        "selected_epoch": next((h["epoch"] for h in reversed(history) if h.get("selected")), None),
        "weights": settings.get("weights"),
    })
    return model, history, metrics
