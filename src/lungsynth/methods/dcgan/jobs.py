"""The DCGAN branch's workflow jobs (seed 000): train one class, train the classifier, score the images.

Each function is what one workflow job does, artifact paths in, artifact files out; ``workflow/scripts`` call them with
paths from the ``snakemake`` object, tests call them directly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lungsynth.tasks.classifier import fit_and_test_classifier, load_classifier, save_classifier
from lungsynth.artifacts import torch_load, write_csv, write_json
from lungsynth.data.preprocess import load_split
from lungsynth.engine import discard_checkpoints, select_device
from lungsynth.methods.dcgan.score import score_sets
from lungsynth.methods.dcgan.train import DCGANSettings, train_dcgan
from lungsynth.methods.unconditional import train_class_generator_job

log = logging.getLogger(__name__)


def train_dcgan_job(train_split: str | Path, label: str, **job) -> dict:
    """Train the DCGAN of class ``label``; resume from ``work_dir`` checkpoints when present.

    :func:`lungsynth.methods.unconditional.train_class_generator_job` with :func:`train_dcgan`;
    ``job`` holds that function's keyword arguments.
    """
    return train_class_generator_job(train_dcgan, DCGANSettings, train_split, label, **job)


def train_classifier_job(
    train_split: str | Path,
    val_split: str | Path,
    test_split: str | Path,
    settings: dict,
    model_out: str | Path,
    metrics_out: str | Path,
    history_out: str | Path,
    progress: bool = True,
    work_dir: str | Path | None = None,
) -> dict:
    """Train the DenseNet-169 classifier and write its test metrics (positive class by name).

    With ``work_dir`` training checkpoints each epoch there and a rerun resumes; the checkpoints are
    deleted once the outputs are written (they hold the whole DenseNet-169 twice, plus Adam's moments).
    """
    train, val, test = load_split(train_split), load_split(val_split), load_split(test_split)
    model, history, metrics = fit_and_test_classifier(train, val, test, settings, progress, work_dir=work_dir)
    save_classifier(model_out, model.cpu(), train["classes"], settings["positive_class"])
    write_csv(history_out, pd.DataFrame(history))
    write_json(metrics_out, metrics)
    log.info("classifier test metrics: %s", metrics)
    if work_dir is not None:
        discard_checkpoints(work_dir)
    return metrics


def score_dcgan_job(
    model: str | Path,
    test_split: str | Path,
    generated: dict[str, str | Path],
    settings: dict,
    sets_out: str | Path,
    summary_out: str | Path,
    device: str = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label sets of generated images and real test images with the classifier (seed 000's Fig. 7).

    ``device``: the classifier's (``classifier.device``); inference runs in float32.
    """
    classifier, classes, positive = load_classifier(model, select_device(device))
    images = {label: torch_load(path)["images"] for label, path in generated.items()}
    sets, summary = score_sets(
        classifier, classes, positive, images, load_split(test_split),
        n_sets=settings["n_sets"], set_size=settings["set_size"], confidence=settings["confidence"],
    )
    write_csv(sets_out, sets)
    write_csv(summary_out, summary)
    log.info("positive rates:\n%s", summary.to_string())
    return sets, summary
