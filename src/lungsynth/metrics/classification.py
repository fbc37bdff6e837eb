"""Binary classification metrics.

Conventions: labels are 0/1 with 1 = the positive class (COVID unless configured
otherwise); scores are probabilities (or any monotone score) of the positive
class. Each metric is one function; inputs are 1-D array-likes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _as_binary(y) -> np.ndarray:
    y = np.asarray(y).astype(int).ravel()
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the label, in [0, 1]."""
    y_true, y_pred = _as_binary(y_true), _as_binary(y_pred)
    return float((y_true == y_pred).mean())


def confusion(y_true, y_pred) -> dict[str, int]:
    """Counts ``tp, fp, tn, fn`` with 1 = positive."""
    y_true, y_pred = _as_binary(y_true), _as_binary(y_pred)
    return {
        "tp": int(((y_true == 1) & (y_pred == 1)).sum()),
        "fp": int(((y_true == 0) & (y_pred == 1)).sum()),
        "tn": int(((y_true == 0) & (y_pred == 0)).sum()),
        "fn": int(((y_true == 1) & (y_pred == 0)).sum()),
    }


def f1_score(y_true, y_pred) -> float:
    """F1 of the positive class: 2TP / (2TP + FP + FN); 0 when there are no positives at all."""
    c = confusion(y_true, y_pred)
    denominator = 2 * c["tp"] + c["fp"] + c["fn"]
    return 2 * c["tp"] / denominator if denominator else 0.0


def sensitivity(y_true, y_pred) -> float:
    """TP / (TP + FN) (recall of the positive class); NaN without positives."""
    c = confusion(y_true, y_pred)
    return c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else math.nan


def specificity(y_true, y_pred) -> float:
    """TN / (TN + FP); NaN without negatives."""
    c = confusion(y_true, y_pred)
    return c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else math.nan


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve = P(score of a random positive > random negative), ties count 1/2.

    Computed from average ranks (Mann-Whitney U). NaN when one class is absent.
    """
    y_true = _as_binary(y_true)
    scores = np.asarray(scores, dtype=float).ravel()
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    u = ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def binary_report(y_true, scores, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, F1, AUC, sensitivity and specificity from positive-class scores."""
    y_pred = (np.asarray(scores) >= threshold).astype(int)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "f1": f1_score(y_true, y_pred),
        "auc": roc_auc(y_true, scores),
        "sensitivity": sensitivity(y_true, y_pred),
        "specificity": specificity(y_true, y_pred),
        "n": int(len(y_pred)),
        "n_positive": int(_as_binary(y_true).sum()),
    }
