"""Seed 000's validation of generated images, with the real-image reference it lacked.

The classifier labels ``n_sets`` disjoint sets of ``set_size`` generated images
per class; the per-set share predicted positive (COVID) is what the paper's
Fig. 7 scatters (its mean was ~40% for generated COVID). The same share is
measured on the real test images of each class, split into as many disjoint
sets, so a synthetic rate can be read against what the same classifier says
about real images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lungsynth.tasks.classifier import predict_proba
from lungsynth.metrics.intervals import t_interval, wilson_interval

SET_COLUMNS = ["source", "class", "set", "n", "n_predicted_positive", "share_predicted_positive"]


def _sets(probabilities: np.ndarray, n_sets: int, set_size: int | None) -> list[np.ndarray]:
    if set_size is not None:
        return [probabilities[i * set_size : (i + 1) * set_size] for i in range(n_sets)]
    return [chunk for chunk in np.array_split(probabilities, min(n_sets, len(probabilities))) if len(chunk)]


def score_sets(
    model,
    classes: list[str],
    positive_class: str,
    generated: dict[str, torch.Tensor],
    real_test: dict,
    *,
    n_sets: int,
    set_size: int,
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-set shares predicted positive, and their summary per source and class.

    Args:
        generated: class name -> uint8 images from that class's generator
            (at least ``n_sets * set_size``; the first ones are used).
        real_test: loaded test split (the real reference).
    Returns:
        ``sets`` (one row per set, :data:`SET_COLUMNS`) and ``summary`` (one row per
        source and class: images, sets, mean per-set share with a t interval over
        sets clipped to [0, 1], pooled share with a Wilson interval).
    """
    positive = classes.index(positive_class)
    rows = []
    for label, images in generated.items():
        needed = n_sets * set_size
        if len(images) < needed:
            raise ValueError(f"{label}: {len(images)} generated images, {needed} needed for {n_sets} sets of {set_size}")
        predicted = predict_proba(model, images[:needed]).argmax(1) == positive
        for i, chunk in enumerate(_sets(predicted, n_sets, set_size)):
            rows.append(("synthetic", label, i + 1, len(chunk), int(chunk.sum()), float(chunk.mean())))
        real = real_test["images"][real_test["labels"] == real_test["classes"].index(label)] if label in real_test["classes"] else real_test["images"][:0]
        if len(real):
            real_predicted = predict_proba(model, real).argmax(1) == positive
            for i, chunk in enumerate(_sets(real_predicted, n_sets, None)):
                rows.append(("real", label, i + 1, len(chunk), int(chunk.sum()), float(chunk.mean())))
    sets = pd.DataFrame(rows, columns=SET_COLUMNS)
    summary_rows = []
    for (source, label), group in sets.groupby(["source", "class"], sort=False):
        mean, low, high = t_interval(group["share_predicted_positive"], confidence)
        low, high = max(0.0, low), min(1.0, high)  # a share lies in [0, 1]
        pooled, p_low, p_high = wilson_interval(int(group["n_predicted_positive"].sum()), int(group["n"].sum()), confidence)
        summary_rows.append({
            "source": source, "class": label, "n_images": int(group["n"].sum()), "n_sets": len(group),
            "mean_share_positive": mean, "ci_low": low, "ci_high": high,
            "pooled_share_positive": pooled, "pooled_ci_low": p_low, "pooled_ci_high": p_high,
        })
    summary = pd.DataFrame(summary_rows)
    return sets, summary
