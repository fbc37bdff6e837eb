"""The LUS branch's workflow jobs (seed 003): train one severity score's GAN, the similarity suite.

Each function is what one workflow job does, artifact paths in, artifact files out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from lungsynth.artifacts import torch_load, torch_save, write_csv
from lungsynth.data.preprocess import class_images, load_split
from lungsynth.engine import select_device
from lungsynth.methods.lusgan.train import LUSSettings, train_lus_gan
from lungsynth.methods.unconditional import train_class_generator_job
from lungsynth.metrics import similarity as sim

log = logging.getLogger(__name__)


def train_lusgan_job(train_split: str | Path, label: str, **job) -> dict:
    """Train seed 003's GAN of severity score ``label``; resume from ``work_dir`` checkpoints when present.

    :func:`lungsynth.methods.unconditional.train_class_generator_job` with :func:`train_lus_gan`;
    ``job`` holds that function's keyword arguments.
    """
    return train_class_generator_job(train_lus_gan, LUSSettings, train_split, label, **job)


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
