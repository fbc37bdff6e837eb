"""Stage-level entry points: artifact paths in, artifact files out.

Each function is what one workflow job does; ``workflow/scripts`` call them with
paths from the ``snakemake`` object, tests call them directly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from .classifier import load_classifier, predict_proba, save_classifier, train_classifier
from .io_utils import torch_load, torch_save, write_csv, write_json
from .metrics import binary_report
from .preprocess import class_images, load_split
from .engine import discard_checkpoints, select_device
from .scoring import score_sets
from .training import DCGANSettings, train_dcgan

log = logging.getLogger(__name__)


def _train_gan_job(trainer, settings_cls, train_split, label, model_config, settings, work_dir,
                   generator_out, losses_out, progress) -> dict:
    """Shared body of the per-class GAN jobs: class images in, generator and loss CSV out."""
    images = class_images(load_split(train_split), label)
    result = trainer(images, model_config, settings_cls.from_dict(settings), work_dir, progress=progress)
    log.info("class %s: %d images, %d steps%s", label, len(images), result["steps"],
             f", resumed from step {result['resumed_from']}" if result["resumed_from"] is not None else "")
    torch_save(generator_out, {k: result[k] for k in ("generator", "model_config", "channels", "image_size", "step")}
               | {"label": label})
    write_csv(losses_out, pd.read_csv(result["loss_csv"]))
    return result


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
    return _train_gan_job(train_dcgan, DCGANSettings, train_split, label, model_config, settings, work_dir,
                          generator_out, losses_out, progress)


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


def train_lusgan_job(
    train_split: str | Path,
    label: str,
    model_config: dict,
    settings: dict,
    work_dir: str | Path,
    generator_out: str | Path,
    losses_out: str | Path,
    progress: bool = True,
) -> dict:
    """Train seed 003's GAN for one severity score; resume from ``work_dir`` checkpoints when present."""
    from .training_lus import LUSSettings, train_lus_gan

    return _train_gan_job(train_lus_gan, LUSSettings, train_split, label, model_config, settings, work_dir,
                          generator_out, losses_out, progress)


def _even_sample(images: torch.Tensor, cap: int | None) -> torch.Tensor:
    """At most ``cap`` images, evenly spaced (frames of one video are adjacent, so this spreads over videos)."""
    if cap is None or len(images) <= cap:
        return images
    index = torch.linspace(0, len(images) - 1, cap).round().long()
    return images[index]


def ms_ssim_levels(size: int, max_levels: int = 5) -> int:
    """Most MS-SSIM scales an image of side ``size`` allows (an 11-px window on the coarsest scale)."""
    levels = max_levels
    while levels > 1 and (11 - 1) * 2 ** (levels - 1) + 1 > size:
        levels -= 1
    return levels


def _per_image(matrix: torch.Tensor) -> torch.Tensor:
    """Row means ignoring NaN: one value per generated image (pairs sharing an image are not independent)."""
    valid = ~torch.isnan(matrix)
    return torch.where(valid, matrix, 0.0).sum(1) / valid.sum(1).clamp_min(1)


def similarity_job(
    generated: dict[str, str | Path],
    train_split: str | Path,
    test_split: str | Path,
    settings: dict,
    summary_out: str | Path,
    diversity_out: str | Path,
    nearest_out: str | Path,
    values_out: str | Path,
) -> None:
    """Seed 003's similarity study, done correctly: all pairs per score, diversity and memorization.

    * generated vs real: every generated image against every (capped) real reference frame of
      the same score (``reference_split``: test by default), per metric;
    * diversity: MS-SSIM among generated images vs among real reference frames of the same score;
    * memorization: each generated image's nearest training frame (MS-SSIM), near-copies flagged.

    Intervals are over images (each image's mean over its pairs), not over pairs, because the
    pairs sharing an image are not independent. MS-SSIM uses as many scales as the image size
    allows (5 from 161 px; 3 at 64 px), recorded in the tables.
    """
    from . import similarity as sim

    train, test = load_split(train_split), load_split(test_split)
    confidence = settings["confidence"]
    reference_split = settings.get("reference_split", "test")
    reference = test if reference_split == "test" else train
    levels = ms_ssim_levels(int(train["images"].shape[-1]))
    ms_options = {"weights": sim.ms_ssim_weights(levels)}
    summary_rows, diversity_rows, nearest_frames = [], [], []
    values: dict[str, torch.Tensor] = {}
    device = select_device(settings.get("device", "cpu"))
    for label, path in generated.items():
        fake = (torch_load(path)["images"].float() / 255.0).to(device)
        real = (_even_sample(class_images(reference, label), settings["max_real"]).float() / 255.0).to(device)
        train_real = (class_images(train, label).float() / 255.0).to(device)
        matrices = sim.compare_sets(fake, real, metrics=tuple(settings["metrics"]), options={"ms_ssim": ms_options})
        for metric, matrix in matrices.items():
            values[f"{label}/{metric}"] = matrix.flatten().cpu()
            summary_rows.append({"score": label, "metric": metric, "reference": reference_split,
                                 "ms_ssim_scales": levels, "generated": matrix.shape[0], "real": matrix.shape[1],
                                 "pairs": int(matrix.numel())} | sim.summarise(_per_image(matrix), confidence))
        for source, images in (("generated", fake), ("real", real)):
            among = sim.pairwise("ms_ssim", images, **ms_options)
            diversity_rows.append({"score": label, "source": source, "images": len(images),
                                   "pairs": len(images) * (len(images) - 1) // 2, "ms_ssim_scales": levels}
                                  | sim.summarise(_per_image(among), confidence))
        nearest = sim.nearest_neighbours(fake, train_real, "ms_ssim", threshold=settings["near_copy_threshold"],
                                         **ms_options)
        nearest = nearest.rename(columns={"score": "similarity"})  # "score" is the severity score here
        nearest.insert(0, "score", label)
        nearest_frames.append(nearest)
        log.info("score %s: %d generated x %d real frames compared (MS-SSIM with %d scales)",
                 label, len(fake), len(real), levels)
    write_csv(summary_out, pd.DataFrame(summary_rows))
    write_csv(diversity_out, pd.DataFrame(diversity_rows))
    write_csv(nearest_out, pd.concat(nearest_frames, ignore_index=True))
    torch_save(values_out, values)
