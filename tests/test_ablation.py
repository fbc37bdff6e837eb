"""Study design and metrics of the downstream studies (U-Net Tables III/IV, classifier study)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lungsynth.studies.design import (
    add_composition,
    fold_indices,
    fold_metrics,
    ratios,
    replace_composition,
    summarise_classifier_runs,
    summarise_folds,
    summarise_seeds,
)


def test_ratios_are_exact():
    assert ratios(0.5, 0.1) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert ratios(0.5, 0.25) == [0.0, 0.25, 0.5]


@pytest.mark.parametrize("ratio", ratios(0.5, 0.1))
def test_replace_keeps_total_and_add_keeps_real(ratio):
    real, synth = replace_composition(73, 100, ratio, seed=1)
    assert len(real) + len(synth) == 73 and len(synth) == round(ratio * 73)
    assert len(set(real)) == len(real) and len(set(synth)) == len(synth) and real.max() < 73
    real, synth = add_composition(73, 100, ratio, seed=1)
    assert len(real) == 73 and len(synth) == round(ratio * 73)


def test_composition_errors():
    with pytest.raises(ValueError, match="only 3 exist"):
        replace_composition(10, 3, 0.5, 0)
    with pytest.raises(ValueError, match="must be in"):
        add_composition(10, 10, 1.5, 0)


def test_fold_metrics_match_a_hand_computed_case():
    pred = np.array([[[1, 1, 0], [2, 0, 0]], [[0, 0, 0], [0, 0, 0]], [[1, 2, 2], [0, 0, 0]], [[0, 1, 0], [0, 0, 2]]])
    target = np.array([[[1, 0, 0], [2, 2, 0]], [[0, 0, 0], [0, 0, 0]], [[1, 1, 2], [0, 0, 0]], [[0, 0, 0], [0, 0, 2]]])
    folds = [np.array([0, 1]), np.array([2, 3])]
    frame = fold_metrics(pred, target, folds).set_index(["fold", "structure", "metric"])["value"]
    # fold 0, ground-glass: TP 1, FP 1, FN 0, TN 10 -> Dice 2/3, sens 1, spec 10/11
    assert frame[(0, "ground_glass", "dice")] == pytest.approx(2 / 3)
    assert frame[(0, "ground_glass", "sensitivity")] == 1.0
    assert frame[(0, "ground_glass", "specificity")] == pytest.approx(10 / 11)
    # fold 0, consolidation: TP 1, FP 0, FN 1 -> Dice 2/3, sens 1/2
    assert frame[(0, "consolidation", "dice")] == pytest.approx(2 / 3)
    assert frame[(0, "consolidation", "sensitivity")] == 0.5
    # fold 1, infection: pred {1,2} at 5 pixels, target at 4, TP 4, FP 1, FN 0, TN 7 -> Dice 8/9
    assert frame[(1, "infection", "dice")] == pytest.approx(8 / 9)
    assert frame[(1, "infection", "specificity")] == pytest.approx(7 / 8)


def test_fold_indices_partition():
    folds = fold_indices(23, 10, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


def _frame(values, structure="infection", metric="dice"):
    return pd.DataFrame({"fold": range(len(values)), "structure": structure, "metric": metric, "value": values})


def test_fold_interval_equals_scipy():
    values = np.random.default_rng(0).uniform(0.6, 0.9, 10)
    row = summarise_folds(_frame(values)).iloc[0]
    low, high = stats.t.interval(0.95, 9, loc=values.mean(), scale=stats.sem(values))
    assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
    assert row["low"] == pytest.approx(low, abs=1e-12) and row["high"] == pytest.approx(high, abs=1e-12)


def test_seed_interval():
    rng = np.random.default_rng(1)
    one = summarise_seeds({0: _frame(rng.uniform(0.6, 0.9, 10))}).iloc[0]
    assert one["seed_low"] == one["fold_low"] and one["seed_high"] == one["fold_high"]
    base = rng.normal(0, 0.01, 10)
    spread = summarise_seeds({0: _frame(0.5 + base), 1: _frame(0.8 + base), 2: _frame(0.65 + base)}).iloc[0]
    assert spread["seed_high"] - spread["seed_low"] > spread["fold_high"] - spread["fold_low"]
    flat = summarise_seeds({0: _frame(np.full(10, 0.7)), 1: _frame(np.full(10, 0.7))}).iloc[0]
    assert flat["seed_low"] == flat["seed_high"] == pytest.approx(0.7)


def test_seed_interval_matches_hand_computed_crossed_design():
    y = np.array([[0.60, 0.70, 0.65, 0.72], [0.66, 0.75, 0.70, 0.78], [0.58, 0.69, 0.61, 0.70]])  # seeds x folds
    row = summarise_seeds({s: _frame(y[s]) for s in range(3)}).iloc[0]
    c, m = y.mean(0), y.mean(1)
    a, b = m.var(ddof=1) / 3, c.var(ddof=1) / 4
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / 3)
    half = stats.t.ppf(0.975, df) * np.sqrt(a + b)
    fold_low, fold_high = stats.t.interval(0.95, 3, loc=c.mean(), scale=stats.sem(c))
    assert row["mean"] == pytest.approx(y.mean())
    assert row["fold_low"] == pytest.approx(fold_low) and row["fold_high"] == pytest.approx(fold_high)
    assert row["seed_low"] == pytest.approx(min(y.mean() - half, fold_low))
    assert row["seed_high"] == pytest.approx(max(y.mean() + half, fold_high))


def test_classifier_summary_equals_scipy():
    runs = pd.DataFrame({"ratio": [0.0] * 3 + [0.5] * 3, "seed": [0, 1, 2] * 2,
                         "accuracy": [0.7, 0.75, 0.8, 0.8, 0.82, 0.79], "f1": [0.6] * 6, "auc": [0.8, 0.9, 0.85] * 2})
    table = summarise_classifier_runs(runs).set_index(["ratio", "metric"])
    values = np.array([0.7, 0.75, 0.8])
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert table.loc[(0.0, "accuracy"), "low"] == pytest.approx(low) and table.loc[(0.0, "accuracy"), "high"] == pytest.approx(high)
    single = summarise_classifier_runs(runs[runs.seed == 0])
    assert math.isnan(single["low"].iloc[0])


def test_classifier_training_split_adds_per_class_share_and_nothing_at_zero():
    import torch

    from lungsynth.studies.jobs import classifier_training_split

    train = {"images": torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), "labels": torch.tensor([0] * 6 + [1] * 4),
             "classes": ["covid", "noncovid"]}
    generated = {"covid": torch.full((20, 1, 1, 1), 100, dtype=torch.uint8),
                 "noncovid": torch.full((20, 1, 1, 1), 200, dtype=torch.uint8)}
    same = classifier_training_split(train, generated, 0.0, seed=0)
    assert torch.equal(same["images"], train["images"]) and torch.equal(same["labels"], train["labels"])
    half = classifier_training_split(train, generated, 0.5, seed=0)
    assert (half["labels"] == 0).sum() == 6 + 3 and (half["labels"] == 1).sum() == 4 + 2
    assert (half["images"][10:13] == 100).all() and (half["images"][13:] == 200).all()


def test_report_layouts_follow_the_paper():
    from lungsynth.report.studies import classifier_layout, paper_layout

    rows = []
    for method, ratio, n_seeds in (("real only", 0.0, 2), ("globallocal", 0.5, 2), ("pix2pix", 0.5, 2)):
        for structure in ("ground_glass", "consolidation", "infection"):
            for metric in ("dice", "sensitivity", "specificity"):
                rows.append({"mode": "replace", "method": method, "ratio": ratio, "structure": structure, "metric": metric,
                             "mean": 0.5, "fold_low": 0.4, "fold_high": 0.6, "seed_low": 0.3, "seed_high": 0.7,
                             "n_seeds": n_seeds, "k": 10})
    table = paper_layout(pd.DataFrame(rows), "replace")
    assert list(table["synthetic share"]) == ["0%", "50%", "50%"] and len(table.columns) == 2 + 9
    assert table.iloc[0]["infection Dice"] == "50.00 [40.00, 60.00] seeds: [30.00, 70.00]"
    runs = pd.DataFrame({"ratio": [0.0, 0.0, 0.0, 0.5, 0.5, 0.5], "metric": ["accuracy", "f1", "auc"] * 2,
                         "mean": [0.8] * 6, "low": [0.7] * 6, "high": [0.9] * 6, "n_seeds": [3] * 6})
    layout = classifier_layout(runs)
    assert list(layout.columns) == ["DCGAN images added", "seeds", "accuracy", "F1", "AUC"]
    assert layout.iloc[1]["AUC"] == "0.800 [0.700, 0.900]"


def test_intervals_stay_inside_the_metric_range():
    wide = summarise_seeds({0: _frame(np.array([0.99, 0.97, 0.99, 0.98])), 1: _frame(np.array([0.6, 0.7, 0.65, 0.62]))})
    row = wide.iloc[0]
    assert 0.0 <= row["seed_low"] <= row["fold_low"] and row["fold_high"] <= row["seed_high"] == 1.0


def test_unet_study_cells_per_seed_real_modes_and_compared_methods():
    from lungsynth.studies.design import study_ratios, unet_study_cells

    seg = {"max_ratio": 0.5, "step": 0.1, "seeds": [0, 1, 2], "modes": ["replace", "add"], "method": "globallocal",
           "compare_at_max": True}
    methods = ["globallocal", "pix2pix", "pix2pixhd", "spade", "sean", "no_desum"]
    cells = unet_study_cells(seg, methods)
    assert study_ratios(seg) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert len(cells) == 3 * (1 + 2 * 5 + 5)  # paper layout: real only, 2 modes x 5 shares, 5 others at 50%
    assert cells[:3] == [("real", "none", 0.0, 0), ("replace", "globallocal", 0.1, 0), ("replace", "globallocal", 0.2, 0)]
    assert ("replace", "sean", 0.5, 2) in cells and ("add", "sean", 0.5, 2) not in cells
    assert len(unet_study_cells({**seg, "compare_at_max": False}, methods)) == 3 * 11



def test_study_jobs_take_the_cell_keys_from_the_caller(tmp_path):
    import json

    from lungsynth.studies.jobs import ablation_tables_job, classifier_study_job

    rng = np.random.default_rng(0)
    cells = {}
    for seed in (0, 1):
        for mode, method, ratio in (("real", "none", 0.0), ("replace", "globallocal", 0.5), ("add", "globallocal", 0.5)):
            folds = pd.concat([_frame(rng.uniform(0.5, 0.9, 3), metric=m) for m in ("dice", "sensitivity", "specificity")])
            path = tmp_path / f"folds_{mode}_{seed}.csv"
            folds.assign(seed=seed).to_csv(path, index=False)
            cells[(mode, method, ratio, seed)] = path
    table = ablation_tables_job(cells, tmp_path / "tables.csv", tmp_path / "plot.png")
    assert set(zip(table["mode"], table["method"], table["ratio"])) == {
        ("replace", "real only", 0.0), ("add", "real only", 0.0), ("replace", "globallocal", 0.5), ("add", "globallocal", 0.5)}
    assert (table["n_seeds"] == 2).all()

    runs = {}
    for ratio in (0.0, 0.25):
        for seed in (0, 1, 2):
            path = tmp_path / f"metrics_{ratio}_{seed}.json"
            path.write_text(json.dumps({"accuracy": 0.7 + seed / 100, "f1": 0.6, "auc": 0.8 + ratio / 10}))
            runs[(ratio, seed)] = path
    summary = classifier_study_job(runs, tmp_path / "summary.csv", tmp_path / "study.png").set_index(["ratio", "metric"])
    assert summary.loc[(0.25, "auc"), "mean"] == pytest.approx(0.825) and (summary["n_seeds"] == 3).all()
