"""Stage-level entry points: artifact paths in, artifact files out.

Each function is what one workflow job does; ``workflow/scripts`` call them with
paths from the ``snakemake`` object, tests call them directly.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import torch

from .classifier import load_classifier, predict_proba, save_classifier, train_classifier
from .io_utils import torch_load, torch_save, write_csv, write_json
from .metrics import binary_report
from .preprocess import class_images, load_split
from .scoring import score_sets
from .training import DCGANSettings, train_dcgan

log = logging.getLogger(__name__)


def train_dcgan_job(
    train_split: str | Path,
    label: str,
    model_config: dict,
    settings: dict,
    work_dir: str | Path,
    generator_out: str | Path,
    losses_out: str | Path,
    progress: bool = True,
) -> dict:
    """Train the DCGAN of class ``label``; resume from ``work_dir`` checkpoints when present."""
    images = class_images(load_split(train_split), label)
    fields = {f.name for f in dataclasses.fields(DCGANSettings)}
    result = train_dcgan(images, model_config, DCGANSettings(**{k: v for k, v in settings.items() if k in fields}),
                         work_dir, progress=progress)
    log.info("class %s: %d images, %d steps%s", label, len(images), result["steps"],
             f", resumed from step {result['resumed_from']}" if result["resumed_from"] is not None else "")
    torch_save(generator_out, {k: result[k] for k in ("generator", "model_config", "channels", "image_size", "step")}
               | {"label": label})
    losses = pd.read_csv(result["loss_csv"])
    write_csv(losses_out, losses)
    return result


def train_classifier_job(
    train_split: str | Path,
    val_split: str | Path,
    test_split: str | Path,
    settings: dict,
    model_out: str | Path,
    metrics_out: str | Path,
    history_out: str | Path,
    progress: bool = True,
) -> dict:
    """Train the DenseNet-169 classifier and write its test metrics (positive class by name)."""
    train, val, test = load_split(train_split), load_split(val_split), load_split(test_split)
    positive = settings["positive_class"]
    model, history = train_classifier(
        train, val, positive_class=positive, epochs=settings["epochs"], batch_size=settings["batch_size"],
        lr=settings["lr"], seed=settings["seed"], crop_scale=tuple(settings["crop_scale"]),
        weights=settings.get("weights"), device=settings.get("device", "auto"), progress=progress,
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
    save_classifier(model_out, model.cpu(), train["classes"], positive)
    write_csv(history_out, pd.DataFrame(history))
    write_json(metrics_out, metrics)
    log.info("classifier test metrics: %s", metrics)
    return metrics


def score_dcgan_job(
    model: str | Path,
    test_split: str | Path,
    generated: dict[str, str | Path],
    settings: dict,
    sets_out: str | Path,
    summary_out: str | Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label sets of generated images and real test images with the classifier (seed 000's Fig. 7)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classifier, classes, positive = load_classifier(model, device)
    images = {label: torch_load(path)["images"] for label, path in generated.items()}
    sets, summary = score_sets(
        classifier, classes, positive, images, load_split(test_split),
        n_sets=settings["n_sets"], set_size=settings["set_size"], confidence=settings["confidence"],
    )
    write_csv(sets_out, sets)
    write_csv(summary_out, summary)
    log.info("positive rates:\n%s", summary.to_string())
    return sets, summary
