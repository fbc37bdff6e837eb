"""Matplotlib figures of the report (Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .io_utils import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def loss_curves(curves: dict[str, pd.DataFrame], path: str | Path, smooth: int = 10) -> None:
    """One panel per class: D and G loss per step (thin) and a moving average (bold)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
    for ax, (label, frame) in zip(axes[0], curves.items()):
        for column, colour in (("loss_d", "tab:blue"), ("loss_g", "tab:orange")):
            ax.plot(frame["step"], frame[column], color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(frame["step"], frame[column].rolling(smooth, min_periods=1).mean(), color=colour,
                    linewidth=1.8, label=column.replace("loss_", "loss "))
        ax.set_title(f"DCGAN {label}")
        ax.set_xlabel("step")
        ax.set_ylabel("BCE loss")
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
