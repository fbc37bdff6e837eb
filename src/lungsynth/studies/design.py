"""Study design and metrics of the downstream studies (seed 001's Tables III/IV; the classifier study).

Conventions:

- Shares: ``ratios(max_ratio, step)`` = 0, step, ..., max_ratio, each rounded to 6 decimals.
- Replace (Table III): the total stays ``n_real``; ``round(ratio * n_real)`` of it are synthetic.
  Add (Table IV): all ``n_real`` real items plus ``round(ratio * n_real)`` synthetic ones.
- Pixel metrics per fold: true/false positives/negatives are pooled over all pixels of the
  fold's slices (micro), per structure (ground-glass = class 1, consolidation = 2,
  infection = 1 or 2). Dice = 2TP / (2TP + FP + FN) (1 when the structure is absent from
  both), sensitivity = TP / (TP + FN) (NaN without positives), specificity = TN / (TN + FP).
- Intervals: over k folds, mean +/- t(0.975, k - 1) s / sqrt(k), s with ddof 1, clipped to
  [0, 1] (all metrics are proportions). With several
  training seeds on the same folds, the seed-inclusive interval adds the between-seed
  variance (see :func:`summarise_seeds`); with one seed it equals the fold interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lungsynth.metrics.intervals import proportion_t_bounds
from lungsynth.metrics.segmentation import confusion_counts, dice, sensitivity, specificity

STRUCTURES: dict[str, frozenset[int]] = {"ground_glass": frozenset({1}), "consolidation": frozenset({2}),
                                         "infection": frozenset({1, 2})}
METRICS = ("dice", "sensitivity", "specificity")


def ratios(max_ratio: float = 0.5, step: float = 0.1) -> list[float]:
    """Synthetic shares 0, step, ..., max_ratio (no float drift: each rounded to 6 decimals)."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    n = int(np.floor(max_ratio / step + 1e-9))
    return [round(i * step, 6) for i in range(n + 1)]


def study_ratios(section: dict) -> list[float]:
    """The shares of an ablation study section (``max_ratio``, ``step``), rounded to 2 decimals as in cell paths."""
    return [float(f"{r:.2f}") for r in ratios(section["max_ratio"], section["step"])]


def unet_study_cells(segmentation: dict, methods: list[str]) -> list[tuple[str, str, float, int]]:
    """``(mode, method, ratio, seed)`` of every U-Net-study cell (one Snakemake job each).

    Per seed of ``segmentation`` (the ``ablation.segmentation`` section): the real-only cell
    ``("real", "none", 0.0, seed)``, each mode at each share above 0 with the study's method, and with
    ``compare_at_max`` every other of ``methods`` (the configured cGAN methods and variants) replacing
    at the largest share.
    """
    values = study_ratios(segmentation)
    cells = []
    for seed in segmentation["seeds"]:
        cells.append(("real", "none", 0.0, seed))
        for mode in segmentation["modes"]:
            cells += [(mode, segmentation["method"], r, seed) for r in values[1:]]
        if segmentation["compare_at_max"]:
            cells += [("replace", m, values[-1], seed) for m in methods if m != segmentation["method"]]
    return cells


def _synthetic_count(n_real: int, n_synthetic: int, ratio: float, action: str) -> int:
    """``round(ratio * n_real)``, checked against the share's range and the synthetic items available."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"the synthetic share must be in [0, 1], got {ratio}")
    k = int(round(ratio * n_real))
    if k > n_synthetic:
        raise ValueError(f"{action} {ratio:.0%} of {n_real} real items needs {k} synthetic ones, only {n_synthetic} exist")
    return k


def replace_composition(n_real: int, n_synthetic: int, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (real, synthetic) with ``n_real`` items in all, ``round(ratio * n_real)`` of them synthetic."""
    k = _synthetic_count(n_real, n_synthetic, ratio, "replacing")
    rng = np.random.default_rng(seed)
    real = np.sort(rng.permutation(n_real)[: n_real - k])
    synthetic = np.sort(rng.permutation(n_synthetic)[:k])
    return real, synthetic


def add_composition(n_real: int, n_synthetic: int, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (real, synthetic): all ``n_real`` real items plus ``round(ratio * n_real)`` synthetic ones."""
    k = _synthetic_count(n_real, n_synthetic, ratio, "adding")
    rng = np.random.default_rng(seed)
    return np.arange(n_real), np.sort(rng.permutation(n_synthetic)[:k])


def fold_indices(n: int, k: int = 10, seed: int = 0) -> list[np.ndarray]:
    """A fixed shuffled split of ``n`` items into ``k`` folds whose sizes differ by at most 1."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n to split {n} items into {k} folds")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def fold_metrics(pred, target, folds: list[np.ndarray]) -> pd.DataFrame:
    """Per fold and structure: Dice, sensitivity, specificity (columns fold, structure, metric, value)."""
    pred, target = np.asarray(pred), np.asarray(target)
    rows = []
    for f, index in enumerate(folds):
        for name, positive in STRUCTURES.items():
            c = confusion_counts(pred[index], target[index], positive)
            values = {"dice": dice(c["tp"], c["fp"], c["fn"]), "sensitivity": sensitivity(c["tp"], c["fn"]),
                      "specificity": specificity(c["tn"], c["fp"])}
            rows += [{"fold": f, "structure": name, "metric": m, "value": v} for m, v in values.items()]
    return pd.DataFrame(rows)


def summarise_folds(frame: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per structure x metric: mean and t interval over folds (ddof 1); columns structure, metric, mean, low, high, k."""
    rows = []
    for (structure, metric), group in frame.groupby(["structure", "metric"], sort=False):
        values = group["value"].dropna().to_numpy(float)
        k = len(values)
        mean = float(values.mean()) if k else float("nan")
        se = values.std(ddof=1) / np.sqrt(k) if k > 1 else float("nan")
        low, high = proportion_t_bounds(mean, se, k - 1, confidence)
        rows.append({"structure": structure, "metric": metric, "mean": mean, "low": low, "high": high, "k": k})
    return pd.DataFrame(rows)


def summarise_seeds(frames: dict[int, pd.DataFrame], confidence: float = 0.95) -> pd.DataFrame:
    """Per structure x metric over training seeds evaluated on the same folds: fold-only and seed-inclusive CIs.

    With ``y[s, f]`` the value of seed s on fold f (S seeds, k folds), ``m_s`` the seed means and
    ``c_f`` the seed-averaged fold values: ``mean`` is the grand mean; the fold-only interval is the
    t interval over ``c_f`` (df k - 1), equal to :func:`summarise_folds` for one seed. The folds are
    shared by all seeds (crossed, not nested), so the seed-inclusive interval uses
    SE^2 = A + B, A = var(m_s) / S, B = var(c_f) / k (ddof 1), with Welch-Satterthwaite df
    (A + B)^2 / (A^2 / (S - 1) + B^2 / (k - 1)); it is never narrower than the fold-only one.
    Folds that are NaN for every seed (a structure absent from a fold) are dropped.
    """
    if not frames:
        raise ValueError("no training seeds to summarise")
    stacked = pd.concat([f.assign(seed=s) for s, f in frames.items()], ignore_index=True)
    q = 0.5 + confidence / 2
    rows = []
    for (structure, metric), group in stacked.groupby(["structure", "metric"], sort=False):
        matrix = group.pivot_table(index="seed", columns="fold", values="value", aggfunc="first", dropna=False)
        matrix = matrix.dropna(axis=1, how="all")
        if matrix.isna().any().any():
            raise ValueError(f"{structure}/{metric}: some folds are missing for some seeds only")
        y = matrix.to_numpy(float)
        n_seeds, k = y.shape
        mean = float(y.mean()) if y.size else float("nan")
        fold_low = fold_high = seed_low = seed_high = float("nan")
        if k >= 2:
            b = y.mean(axis=0).var(ddof=1) / k
            fold_low, fold_high = proportion_t_bounds(mean, np.sqrt(b), k - 1, confidence)
            seed_low, seed_high = fold_low, fold_high
            a = y.mean(axis=1).var(ddof=1) / n_seeds if n_seeds > 1 else 0.0
            if a > 0:
                df = (a + b) ** 2 / (a * a / (n_seeds - 1) + b * b / (k - 1))
                from scipy import stats

                half = float(stats.t.ppf(q, df)) * np.sqrt(a + b)
                seed_low, seed_high = max(min(mean - half, fold_low), 0.0), min(max(mean + half, fold_high), 1.0)
        rows.append({"structure": structure, "metric": metric, "mean": mean, "fold_low": fold_low,
                     "fold_high": fold_high, "seed_low": seed_low, "seed_high": seed_high, "n_seeds": n_seeds, "k": k})
    return pd.DataFrame(rows)


def summarise_classifier_runs(frame: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per ratio and metric (accuracy, f1, auc): mean and t interval over seeds (NaN bounds with one seed)."""
    rows = []
    for ratio, group in frame.groupby("ratio"):
        for metric in ("accuracy", "f1", "auc"):
            values = group[metric].dropna().to_numpy(float)
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            se = values.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
            low, high = proportion_t_bounds(mean, se, n - 1, confidence)
            rows.append({"ratio": float(ratio), "metric": metric, "mean": mean, "low": low, "high": high, "n_seeds": n})
    return pd.DataFrame(rows)
