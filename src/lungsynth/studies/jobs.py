"""Stage-level entry points of the downstream studies (seed 001's Tables III/IV, seed 000's classifier).

Segmentation study (under ``results/<dataset>/ablation/``): a U-Net is trained on the
real (augmented) slices of the synthesis-test split with a share of them replaced by,
or supplemented with, composite synthetic slices generated from the same maps, and
evaluated on the augmented segmentation-test split divided into folds. Each cell
(mode, method, ratio, training seed) is one job. The ratio-0 cell (real only, mode ``"real"``,
method ``"none"``) is shared by both modes. The caller names each cell by these keys
(:func:`lungsynth.studies.design.unet_study_cells`); where a cell's files lie is its business.

Classifier study (under ``results/<dataset>/classifier_study/``): the DenseNet-169 of
seed 000 trained on the real train split plus ``ratio`` x (real count per class)
DCGAN-synthetic images of each class, tested on the real test split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lungsynth.studies.design import add_composition, fold_indices, fold_metrics, replace_composition
from lungsynth.artifacts import torch_load, write_csv, write_json
from lungsynth.tasks.segmentation import UNetSettings, load_unet, predict_unet, save_unet, segmentation_target, train_unet
from lungsynth.engine import select_device

log = logging.getLogger(__name__)

MODES = ("replace", "add")


def compose_training_set(real: dict, synthetic: torch.Tensor | None, mode: str, ratio: float,
                         seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Images and label maps of one cell: real pairs plus synthetic composites of the same maps.

    ``real``: ``test_aug.pt`` of the conditional-GAN branch (``images``, ``labels``);
    ``synthetic``: uint8 composites aligned with it (``None`` for the real-only cell).
    Returns images, labels and a summary dict (counts).
    """
    n = len(real["images"])
    if ratio == 0 or synthetic is None:
        real_idx, synth_idx = np.arange(n), np.arange(0)
    elif mode == "replace":
        real_idx, synth_idx = replace_composition(n, len(synthetic), ratio, seed)
    elif mode == "add":
        real_idx, synth_idx = add_composition(n, len(synthetic), ratio, seed)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    real_idx, synth_idx = torch.as_tensor(real_idx, dtype=torch.long), torch.as_tensor(synth_idx, dtype=torch.long)
    images = [real["images"][real_idx]]
    labels = [real["labels"][real_idx]]
    if len(synth_idx):
        images.append(synthetic[synth_idx])
        labels.append(real["labels"][synth_idx])  # a composite is synthesised from that map
    return torch.cat(images), torch.cat(labels), {"real": len(real_idx), "synthetic": len(synth_idx)}


def unet_cell_job(real_pairs: str | Path, generated: str | Path | None, test_pairs: str | Path, *, mode: str,
                  ratio: float, seed: int, model_config: dict, settings: dict, folds: int, work_dir: str | Path,
                  model_out: str | Path, folds_out: str | Path, summary_out: str | Path,
                  progress: bool = True) -> pd.DataFrame:
    """Train one cell's U-Net and write its per-fold Dice / sensitivity / specificity on the real test pairs."""
    real = torch_load(real_pairs)
    synthetic = torch_load(generated)["composite"] if generated else None
    images, labels, counts = compose_training_set(real, synthetic, mode, ratio, seed)
    unet_settings = UNetSettings.from_dict({**settings, "seed": seed})
    result = train_unet(images, labels, model_config, unet_settings, work_dir, progress=progress)
    save_unet(model_out, result)
    test = torch_load(test_pairs)
    # evaluate the saved artifact, not the in-memory copy
    model = load_unet(model_out, select_device(settings.get("device", "auto")))
    prediction = predict_unet(model, test["images"], device=next(model.parameters()).device)
    target = segmentation_target(test["labels"])
    frame = fold_metrics(prediction.numpy(), target.numpy(), fold_indices(len(target), folds, seed=0))
    frame.insert(0, "seed", seed)
    write_csv(folds_out, frame)
    write_json(summary_out, {"mode": mode, "ratio": ratio, "seed": seed, **counts, "steps": result["steps"],
                             "resumed_from": result["resumed_from"]})
    log.info("cell %s r=%.2f seed %d: %s real + %s synthetic; mean Dice infection %.3f", mode, ratio, seed,
             counts["real"], counts["synthetic"],
             frame[(frame.structure == "infection") & (frame.metric == "dice")]["value"].mean())
    return frame


def classifier_training_split(train: dict, generated: dict[str, torch.Tensor], ratio: float, seed: int) -> dict:
    """The real train split plus ``round(ratio x n_class)`` synthetic images of each class (add study)."""
    images, labels = [train["images"]], [train["labels"]]
    for index, label in enumerate(train["classes"]):
        n_real = int((train["labels"] == index).sum())
        if ratio == 0 or label not in generated:
            continue
        _, synth_idx = add_composition(n_real, len(generated[label]), ratio, seed + index)
        chosen = generated[label][torch.as_tensor(synth_idx, dtype=torch.long)]
        images.append(chosen)
        labels.append(torch.full((len(chosen),), index, dtype=train["labels"].dtype))
    return {**train, "images": torch.cat(images), "labels": torch.cat(labels)}


def classifier_cell_job(train_split: str | Path, val_split: str | Path, test_split: str | Path,
                        generated: dict[str, str | Path], *, ratio: float, seed: int, settings: dict,
                        metrics_out: str | Path, progress: bool = True, work_dir: str | Path | None = None) -> dict:
    """One cell of the classifier study: real + ratio x synthetic per class, one training seed.

    ``work_dir``: per-epoch checkpoints (resumed by a rerun, deleted once the metrics are written).
    """
    from lungsynth.engine import discard_checkpoints
    from lungsynth.methods.dcgan.jobs import fit_and_test_classifier
    from lungsynth.data.preprocess import load_split

    train, val, test = load_split(train_split), load_split(val_split), load_split(test_split)
    images = {label: torch_load(path)["images"] for label, path in generated.items()}
    augmented = classifier_training_split(train, images, ratio, seed)
    _, _, metrics = fit_and_test_classifier(augmented, val, test, {**settings, "seed": seed}, progress,
                                            work_dir=work_dir)
    metrics.update({"ratio": ratio, "seed": seed, "n_train": len(augmented["images"]), "n_real": len(train["images"])})
    write_json(metrics_out, metrics)
    log.info("classifier study r=%.2f seed %d: %s", ratio, seed, metrics)
    if work_dir is not None:
        discard_checkpoints(work_dir)
    return metrics


def ablation_tables_job(cells: Mapping[tuple[str, str, float, int], str | Path], table_out: str | Path,
                        plot_out: str | Path) -> pd.DataFrame:
    """Tables III/IV in long form: one row per (mode, method, ratio, structure, metric) with both CIs.

    ``cells``: ``(mode, method, ratio, seed)`` -> that cell's ``folds.csv`` (:func:`unet_cell_job`).
    The real-only cell is the ratio-0 row of both modes.
    """
    from lungsynth.studies.design import summarise_seeds
    from lungsynth.figures import metrics_vs_ratio
    from lungsynth.methods.cgan.specs import method_label

    groups: dict[tuple[str, str, float], dict[int, pd.DataFrame]] = {}
    for (mode, method, ratio, seed), path in cells.items():
        groups.setdefault((mode, method, float(ratio)), {})[int(seed)] = pd.read_csv(path)
    modes = sorted({m for m, _, _ in groups if m != "real"}, key=lambda m: MODES.index(m))
    frames = []
    for (mode, method, ratio), per_seed in groups.items():
        summary = summarise_seeds({s: f.drop(columns="seed", errors="ignore") for s, f in per_seed.items()})
        for target_mode in (modes if mode == "real" else [mode]):
            frames.append(summary.assign(mode=target_mode, method="real only" if mode == "real" else method,
                                         ratio=ratio))
    table = pd.concat(frames, ignore_index=True)
    front = ["mode", "method", "ratio"]
    table = table[front + [c for c in table.columns if c not in front]]
    table = table.assign(_order=table["mode"].map(MODES.index)).sort_values(["_order", "ratio", "method", "structure",
                                                                              "metric"]).drop(columns="_order")
    write_csv(table_out, table)
    main = table[table["method"] != "real only"]
    main_method = main["method"].mode().iloc[0] if len(main) else None
    curve = table[table["method"].isin(["real only", main_method])]
    metrics_vs_ratio(curve, plot_out, panel_column="mode", line_column="structure",
                     metrics=["dice", "sensitivity", "specificity"], low="seed_low", high="seed_high",
                     title=f"U-Net trained with {method_label(main_method)} composites (bands: seed-inclusive 95% CI)")
    return table


def seeds_text(n_seeds: int) -> str:
    return f"{n_seeds} training seeds, bands: 95% t interval" if n_seeds > 1 else "one training seed: no interval"


def classifier_study_job(cells: Mapping[tuple[float, int], str | Path], table_out: str | Path,
                         plot_out: str | Path) -> pd.DataFrame:
    """Accuracy, F1 and AUC per synthetic share: mean and t interval over training seeds.

    ``cells``: ``(ratio, seed)`` -> a metrics JSON (a classifier cell's, or for the real-only cell
    of the baseline seed, the baseline classifier's: the same training run).
    """
    import json

    from lungsynth.studies.design import summarise_classifier_runs
    from lungsynth.figures import metrics_vs_ratio

    runs = []
    for (ratio, seed), path in cells.items():
        runs.append({**json.loads(Path(path).read_text()), "ratio": float(ratio), "seed": int(seed)})
    runs = pd.DataFrame(runs)
    table = summarise_classifier_runs(runs[["ratio", "seed", "accuracy", "f1", "auc"]])
    write_csv(table_out, table)
    metrics_vs_ratio(table, plot_out, panel_column=None, line_column=None, metrics=["accuracy", "f1", "auc"],
                     title=f"DenseNet-169 trained with DCGAN images added ({seeds_text(runs['seed'].nunique())})")
    return table
