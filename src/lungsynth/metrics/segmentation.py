"""Segmentation overlap metrics on label maps and masks.

Conventions: predictions and targets are integer label maps (or boolean masks) of one shape; a
structure is the set of labels counted as positive; counts are pooled over every pixel given.
Values are fractions in [0, 1]; NaN where the denominator is empty, except Dice, which is 1.0 when
the structure is absent from both prediction and target.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(pred, target, positive) -> dict[str, int]:
    """TP, FP, FN, TN of the pixels whose class is in ``positive``, pooled over the batch."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    values = list(positive)
    p, t = np.isin(pred, values), np.isin(target, values)
    return {"tp": int((p & t).sum()), "fp": int((p & ~t).sum()), "fn": int((~p & t).sum()), "tn": int((~p & ~t).sum())}


def dice(tp: int, fp: int, fn: int) -> float:
    """2TP / (2TP + FP + FN); 1.0 when the structure is absent from prediction and target."""
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2 * tp / denominator


def sensitivity(tp: int, fn: int) -> float:
    """TP / (TP + FN); NaN without positive pixels."""
    return float("nan") if tp + fn == 0 else tp / (tp + fn)


def specificity(tn: int, fp: int) -> float:
    """TN / (TN + FP); NaN without negative pixels."""
    return float("nan") if tn + fp == 0 else tn / (tn + fp)


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2|A & B| / (|A| + |B|)`` of two boolean masks of one shape; both empty -> 1.0."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    c = confusion_counts(a, b, [True])
    return dice(c["tp"], c["fp"], c["fn"])
