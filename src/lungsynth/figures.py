"""Matplotlib figures (Agg backend, written atomically as PNG): what the jobs plot and the report shows."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lungsynth.artifacts import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def loss_curves(curves: dict[str, pd.DataFrame], path: str | Path, smooth: int = 10, title: str = "DCGAN") -> None:
    """One panel per class: D and G loss per step (thin) and a moving average (bold)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
    for ax, (label, frame) in zip(axes[0], curves.items()):
        for column, colour in (("loss_d", "tab:blue"), ("loss_g", "tab:orange")):
            ax.plot(frame["step"], frame[column], color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(frame["step"], frame[column].rolling(smooth, min_periods=1).mean(), color=colour,
                    linewidth=1.8, label=column.replace("loss_", "loss "))
        ax.set_title(f"{title} {label}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3)
    _save(fig, path)


def positive_rate_scatter(sets: pd.DataFrame, path: str | Path, positive_class: str, paper_mean: float | None = 0.40) -> None:
    """Seed 000's Fig. 7 and more: per-set share predicted positive, synthetic vs real, per class."""
    labels = list(dict.fromkeys(sets["class"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 3.6), squeeze=False, sharey=True)
    for ax, label in zip(axes[0], labels):
        for source, marker, colour in (("synthetic", "o", "tab:red"), ("real", "s", "tab:green")):
            group = sets[(sets["class"] == label) & (sets["source"] == source)]
            if group.empty:
                continue
            ax.scatter(group["set"], group["share_predicted_positive"] * 100, marker=marker, color=colour,
                       label=f"{source} {label} (mean {group['share_predicted_positive'].mean() * 100:.0f}%)")
            ax.axhline(group["share_predicted_positive"].mean() * 100, color=colour, linewidth=1, alpha=0.6)
        if paper_mean is not None and label == positive_class:
            ax.axhline(paper_mean * 100, color="grey", linestyle="--", linewidth=1, label="seed 000 paper mean (40%)")
        ax.set_title(f"{label}: share predicted {positive_class}")
        ax.set_xlabel("set")
        ax.set_ylabel(f"% predicted {positive_class}")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8, loc="best")
    _save(fig, path)


def classifier_history(history: pd.DataFrame, path: str | Path) -> None:
    """Training loss and validation AUC/accuracy per epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(history["epoch"], history["train_loss"], marker="o", label="train loss")
    for column in ("val_auc", "val_accuracy"):
        if column in history:
            ax.plot(history["epoch"], history[column], marker="s", label=column.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    ax.set_title("DenseNet-169 classifier")
    _save(fig, path)


METRIC_LABELS = {
    "ms_ssim": "MS-SSIM (higher = more similar)",
    "ssim": "SSIM (higher = more similar)",
    "psnr": "PSNR dB (higher = more similar)",
    "psnr_b": "PSNR-B dB (higher = more similar)",
    "rmse": "RMSE (lower = more similar)",
    "rase": "RASE (lower = more similar)",
    "sam": "SAM rad (lower = more similar)",
    "scc": "SCC (higher = more similar)",
}


def metric_boxplots(values: dict, scores: list[str], metrics: list[str], path: str | Path) -> None:
    """One panel per metric: generated-vs-real values of all pairs, one box per severity score.

    ``values`` maps ``"<score>/<metric>"`` to a 1-D tensor or array of pair values.
    """
    columns = min(4, len(metrics))
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.0 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        data = []
        for score in scores:
            v = values.get(f"{score}/{metric}")
            v = v.numpy() if hasattr(v, "numpy") else v
            data.append(v[v == v] if v is not None else [])
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(scores) + 1), [f"score {s}" for s in scores], fontsize=8)
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("generated vs real test frames, all pairs", fontsize=10)
    _save(fig, path)


def cgan_cases(labels, real, synthetic: dict, path: str | Path, titles: dict | None = None) -> None:
    """Seed 001's Fig. 6 layout: one row per case, columns map | real | each method.

    ``labels`` uint8 ``(K, S, S)`` (0..3), ``real`` uint8 ``(K, 1, S, S)``, ``synthetic``
    method -> uint8 ``(K, 1, S, S)``; ``titles`` method -> column title.
    """
    titles = titles or {}
    k = len(labels)
    columns = 2 + len(synthetic)
    fig, axes = plt.subplots(k, columns, figsize=(1.9 * columns, 1.9 * k + 0.3), squeeze=False)
    for row in range(k):
        panels = [("label map", labels[row].numpy(), 3), ("real", real[row, 0].numpy(), 255)]
        panels += [(titles.get(m, m), images[row, 0].numpy(), 255) for m, images in synthetic.items()]
        for ax, (title, image, vmax) in zip(axes[row], panels):
            ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def metrics_vs_ratio(table: pd.DataFrame, path: str | Path, *, panel_column: str | None, line_column: str | None,
                     metrics: list[str], low: str = "low", high: str = "high", title: str = "") -> None:
    """One panel per (panel value, metric): mean against the synthetic share, a line per group, CI band.

    ``table`` has columns ``ratio``, ``metric``, ``mean``, ``low``/``high`` (names given) and the
    optional ``panel_column`` / ``line_column`` grouping columns.
    """
    panels = list(dict.fromkeys(table[panel_column])) if panel_column else [None]
    fig, axes = plt.subplots(len(panels), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(panels)),
                             squeeze=False)
    for row, panel in enumerate(panels):
        part = table if panel is None else table[table[panel_column] == panel]
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            sub = part[part["metric"] == metric]
            lines = list(dict.fromkeys(sub[line_column])) if line_column else [None]
            for line in lines:
                data = (sub if line is None else sub[sub[line_column] == line]).sort_values("ratio")
                ax.plot(data["ratio"], data["mean"], marker="o", label=line)
                ax.fill_between(data["ratio"], data[low], data[high], alpha=0.2)
            ax.set_title(f"{panel + ': ' if panel else ''}{metric}")
            ax.set_xlabel("synthetic share")
            ax.grid(alpha=0.3)
            if line_column and row == 0 and col == 0:
                ax.legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
