"""Report sections of the downstream studies: seed 001's Tables III/IV and Table V's Dice column, the classifier study."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lungsynth.methods.cgan.specs import method_label, VARIANTS
from lungsynth.report.html import embedded_png, html_table

STRUCTURES = ("ground_glass", "consolidation", "infection")
METRICS = ("dice", "sensitivity", "specificity")
_STRUCTURE_LABELS = {"ground_glass": "GGO", "consolidation": "consolidation", "infection": "infection"}
_METRIC_LABELS = {"dice": "Dice", "sensitivity": "sensitivity", "specificity": "specificity"}


@dataclass
class AblationReportInputs:
    """Artifacts of the studies; a study whose paths are None is left out."""

    segmentation_table: Path | None = None
    segmentation_plot: Path | None = None
    classifier_table: Path | None = None
    classifier_plot: Path | None = None


def _cell(row: pd.Series, low: str = "fold_low", high: str = "fold_high") -> str:
    """'mean [fold CI]' in percent, plus the seed-inclusive CI when several seeds were trained."""
    text = f"{100 * row['mean']:.2f} [{100 * row[low]:.2f}, {100 * row[high]:.2f}]"
    if row.get("n_seeds", 1) > 1 and low == "fold_low":
        text += f" seeds: [{100 * row['seed_low']:.2f}, {100 * row['seed_high']:.2f}]"
    return text


def classifier_layout(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = synthetic share; columns = accuracy, F1, AUC as 'mean [CI]' (t over seeds, proportions)."""
    rows = []
    for ratio, group in table.groupby("ratio", sort=True):
        row = {"DCGAN images added": f"{100 * ratio:.0f}% per class", "seeds": int(group["n_seeds"].max())}
        for _, r in group.iterrows():
            bounds = "" if pd.isna(r["low"]) else f" [{r['low']:.3f}, {r['high']:.3f}]"
            row[{"f1": "F1", "auc": "AUC"}.get(r["metric"], r["metric"])] = f"{r['mean']:.3f}{bounds}"
        rows.append(row)
    return pd.DataFrame(rows)


def paper_layout(table: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Rows = (method, synthetic share); columns = '<structure> <metric>' as 'mean [fold CI]' in percent,
    followed by 'seeds: [seed-inclusive CI]' when the cell was trained with several seeds."""
    part = table[table["mode"] == mode]
    rows = []
    for (method, ratio), group in part.groupby(["method", "ratio"], sort=False):
        label = method if method == "real only" else method_label(method)
        row = {"training data": label, "synthetic share": f"{100 * ratio:.0f}%"}
        for structure in STRUCTURES:
            for metric in METRICS:
                hit = group[(group["structure"] == structure) & (group["metric"] == metric)]
                row[f"{_STRUCTURE_LABELS[structure]} {_METRIC_LABELS[metric]}"] = _cell(hit.iloc[0]) if len(hit) else "n/a"
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["synthetic share", "training data"], key=lambda c: c.str.rstrip("%").astype(float)
                             if c.name == "synthetic share" else c, kind="stable")


def _figure(source: Path | None, target: Path, alt: str) -> list[str]:
    """The figure copied next to the report and rendered, or nothing when there is none."""
    if source is None:
        return []
    shutil.copyfile(source, target)
    return [embedded_png(target, alt)]


def ablation_sections(inputs: AblationReportInputs, out_dir: Path) -> list[str]:
    """HTML parts of the studies (figures written into ``out_dir`` and embedded)."""
    parts: list[str] = []
    if inputs.segmentation_table is not None:
        table = pd.read_csv(inputs.segmentation_table)
        parts.append("<h2>U-Net with synthetic slices (seed 001's Tables III and IV)</h2>")
        parts.append("<p class='note'>A U-Net (background / ground-glass / consolidation) trained on the real slices of "
                     "the synthesis-test split with a share replaced by (Table III, total fixed) or added to (Table IV, "
                     "real count fixed) composite synthetic slices of the same maps; tested on the augmented "
                     "segmentation-test split in folds. Cells: mean [95% t interval over folds] in percent, as in the "
                     "paper; with several training seeds, 'seeds: [...]' is the interval that also includes the "
                     "variance between training seeds (seeds and folds crossed). Plot bands: the seed-inclusive "
                     "interval.</p>")
        parts += _figure(inputs.segmentation_plot, out_dir / "ablation_metrics_vs_ratio.png",
                         "U-Net metrics against the synthetic share")
        for mode, title in (("replace", "Table III: synthetic replaces real (total fixed)"),
                            ("add", "Table IV: synthetic added (real fixed)")):
            if (table["mode"] == mode).any():
                parts.append(f"<h3>{title}</h3>" + html_table(paper_layout(table, mode)))
        variants = table[table["method"].isin(list(VARIANTS)) | (table["method"] == "globallocal")]
        variants = variants[(variants["mode"] == "replace") & (variants["ratio"] == table["ratio"].max())
                            & (variants["structure"] == "infection") & (variants["metric"] == "dice")]
        if variants["method"].nunique() > 1:
            rows = [{"method": method_label(r["method"]), "Dice (infection, %)": _cell(r)}
                    for _, r in variants.iterrows()]
            parts.append("<h3>Table V, Dice column (replace at the largest share)</h3>" + html_table(pd.DataFrame(rows)))
    if inputs.classifier_table is not None:
        table = pd.read_csv(inputs.classifier_table)
        parts.append("<h2>Classifier trained with DCGAN images added (beyond seed 000)</h2>")
        parts.append("<p class='note'>The DenseNet-169 trained on the real train split plus the given share (of each "
                     "class's real count) of DCGAN images of that class, tested on the real test split; mean [95% t "
                     "interval] over training seeds.</p>")
        parts += _figure(inputs.classifier_plot, out_dir / "classifier_study.png",
                         "classifier metrics against the synthetic share")
        parts.append(html_table(classifier_layout(table)))
    return parts
