"""The HTML report: dataset, real vs synthetic images, training, classifier and seed 000's table.

The page is one self-contained ``index.html`` (figures embedded as PNG data URIs);
the same figures are also written as PNG files beside it for ``snakemake --report``.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import __version__
from .figures import classifier_history, loss_curves, positive_rate_scatter
from .generation import image_grid, save_png
from .ingest import read_manifest
from .io_utils import write_text
from .preprocess import load_split

# Seed 000 (Mann et al.) and the COVID-CT baseline it used, as published.
PAPER_SHARE_COVID = 0.40
PAPER_BASELINE = {"accuracy": 0.847, "f1": 0.854, "auc": 0.919}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.grids{display:flex;flex-wrap:wrap;gap:1.5em}.grids figure{margin:0}figcaption{font-size:.9em;color:#555}
.note{color:#555;font-size:.92em}.warn{color:#a40}img{max-width:100%}
"""


@dataclass
class ReportInputs:
    """Paths of the artifacts one report is built from."""

    dataset: str
    manifest: Path
    skipped: Path
    preprocess_summary: Path
    train_split: Path
    generated_grids: dict[str, Path]
    losses: dict[str, Path]
    classifier_metrics: Path
    classifier_history: Path
    score_sets: Path
    score_summary: Path
    positive_class: str = "covid"
    benchmarks: list[Path] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return floatfmt.format(value) if value == value else "n/a"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def dataset_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Slices and patients per class and split."""
    rows = []
    for label, group in manifest.groupby("class"):
        row = {"class": label}
        for split in ("train", "val", "test"):
            part = group[group["split"] == split]
            row[split] = f"{len(part)} ({part['patient'].nunique()} pat.)"
        row["total"] = f"{len(group)} ({group['patient'].nunique()} pat.)"
        rows.append(row)
    return pd.DataFrame(rows)


def seed000_table(summary: pd.DataFrame, metrics: dict, positive: str) -> pd.DataFrame:
    """Seed 000's reported figures beside this run's."""

    def share(source: str) -> str:
        row = summary[(summary["source"] == source) & (summary["class"] == positive)]
        if row.empty:
            return "n/a"
        r = row.iloc[0]
        return f"{_pct(r['mean_share_positive'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"

    return pd.DataFrame([
        {"quantity": f"generated {positive} predicted {positive} (mean of sets, CI)", "seed 000 paper": "~40% (no CI)", "this run": share("synthetic")},
        {"quantity": f"real {positive} test images predicted {positive}", "seed 000 paper": "not reported", "this run": share("real")},
        {"quantity": "classifier accuracy (real test)", "seed 000 paper": f"{PAPER_BASELINE['accuracy']:.3f}*", "this run": f"{metrics['accuracy']:.3f}"},
        {"quantity": f"classifier F1 ({positive} positive)", "seed 000 paper": f"{PAPER_BASELINE['f1']:.3f}*", "this run": f"{metrics['f1']:.3f}"},
        {"quantity": "classifier AUC", "seed 000 paper": f"{PAPER_BASELINE['auc']:.3f}*", "this run": f"{metrics['auc']:.3f}"},
    ])


def stage_table(paths: list[Path]) -> pd.DataFrame:
    """Wall time and peak memory per job from Snakemake ``benchmark:`` TSVs (``<rule>/<job>.tsv``)."""
    rows = []
    for path in map(Path, paths):
        frame = pd.read_csv(path, sep="\t")
        rows.append({"stage": path.parent.name, "job": path.stem, "seconds": float(frame["s"].iloc[0]),
                     "max RSS (MB)": float(frame["max_rss"].iloc[0])})
    return pd.DataFrame(rows, columns=["stage", "job", "seconds", "max RSS (MB)"])


def share_summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The score summary with shares as percentages and intervals in brackets."""
    rows = []
    for r in summary.itertuples(index=False):
        rows.append({
            "source": r.source, "class": r[1], "images": r.n_images, "sets": r.n_sets,
            "mean share of sets [CI]": f"{_pct(r.mean_share_positive)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]",
            "pooled share [Wilson CI]": f"{_pct(r.pooled_share_positive)} [{_pct(r.pooled_ci_low)}, {_pct(r.pooled_ci_high)}]",
        })
    return pd.DataFrame(rows)


def interpret_shares(summary: pd.DataFrame, positive: str) -> list[str]:
    """Plain-language reading of the positive shares (what a reviewer would point out)."""

    def pooled(source: str, label: str) -> float:
        row = summary[(summary["source"] == source) & (summary["class"] == label)]
        return float(row["pooled_share_positive"].iloc[0]) if len(row) else float("nan")

    notes = []
    synth, real = pooled("synthetic", positive), pooled("real", positive)
    if synth == synth and real == real:
        notes.append(f"The classifier calls {_pct(synth)} of generated {positive} images {positive}, "
                     f"against {_pct(real)} of real {positive} test images.")
    negatives = [label for label in summary["class"].unique() if label != positive]
    for label in negatives:
        synth_neg, real_neg = pooled("synthetic", label), pooled("real", label)
        if synth_neg == synth_neg and real_neg == real_neg:
            notes.append(f"Generated {label} images are called {positive} {_pct(synth_neg)} of the time "
                         f"(real {label}: {_pct(real_neg)}).")
            if synth_neg >= 0.5 and synth_neg - real_neg > 0.25:
                notes.append(f"Warning: generated images of both classes are called {positive}, so the classifier is "
                             "reacting to generator artefacts rather than to class features; a high synthetic "
                             f"{positive} rate here is not evidence of realistic lesions. Train longer or at paper settings.")
    return notes


def build_report(inputs: ReportInputs, out_dir: str | Path, title: str = "lungsynth report") -> Path:
    """Write ``out_dir/index.html`` and the figure PNGs; return the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(inputs.manifest)
    skipped = pd.read_csv(inputs.skipped, dtype=str, keep_default_na=False)
    prep = json.loads(Path(inputs.preprocess_summary).read_text())
    metrics = json.loads(Path(inputs.classifier_metrics).read_text())
    history = pd.read_csv(inputs.classifier_history)
    sets = pd.read_csv(inputs.score_sets)
    summary = pd.read_csv(inputs.score_summary)
    positive = inputs.positive_class

    figures: dict[str, Path] = {}
    train = load_split(inputs.train_split)
    for label in inputs.generated_grids:
        if label in train["classes"]:
            real = train["images"][train["labels"] == train["classes"].index(label)]
            path = out_dir / f"real_{label}.png"
            save_png(image_grid(real, 36), path)
            figures[f"real_{label}"] = path
        synthetic = out_dir / f"synthetic_{label}.png"
        shutil.copyfile(inputs.generated_grids[label], synthetic)
        figures[f"synthetic_{label}"] = synthetic
    figures["losses"] = out_dir / "loss_curves.png"
    loss_curves({label: pd.read_csv(p) for label, p in inputs.losses.items()}, figures["losses"])
    figures["scatter"] = out_dir / "positive_rate_scatter.png"
    positive_rate_scatter(sets, figures["scatter"], positive)
    figures["history"] = out_dir / "classifier_history.png"
    classifier_history(history, figures["history"])

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='note'>lungsynth {__version__} &middot; dataset <b>{html.escape(inputs.dataset)}</b></p>"]

    parts.append("<h2>Dataset</h2>")
    units = set(manifest["unit"])
    scaling = []
    if "HU" in units:
        scaling.append(f"HU window {prep['window']}")
    if "8bit" in units:
        scaling.append(f"8-bit sources normalised ({prep.get('normalise_8bit', 'percentile')})")
    parts.append(f"<p>{len(manifest)} slices from {manifest['patient'].nunique()} patients; splits are patient-level and stratified by class. "
                 f"Preprocessed to {prep['size']}&times;{prep['size']}, {prep['channels']} channel(s), {'; '.join(scaling)}.</p>")
    parts.append(_table(dataset_table(manifest)))
    if len(skipped):
        parts.append(f"<p class='warn'>{len(skipped)} file(s) were skipped as unreadable or inconsistent:</p>")
        parts.append(_table(skipped))
    else:
        parts.append("<p class='note'>No files were skipped.</p>")

    parts.append("<h2>Real vs synthetic images</h2><div class='grids'>")
    for label in inputs.generated_grids:
        if f"real_{label}" in figures:
            parts.append(f"<figure>{_img(figures[f'real_{label}'], f'real {label}')}<figcaption>real {html.escape(label)} (train split)</figcaption></figure>")
        parts.append(f"<figure>{_img(figures[f'synthetic_{label}'], f'synthetic {label}')}<figcaption>synthetic {html.escape(label)} (DCGAN)</figcaption></figure>")
    parts.append("</div>")

    parts.append("<h2>DCGAN training</h2>")
    parts.append(_img(figures["losses"], "loss curves"))

    parts.append("<h2>Classifier (DenseNet-169, real data)</h2>")
    shown = {k: metrics[k] for k in ("accuracy", "f1", "auc", "sensitivity", "specificity", "n", "n_positive") if k in metrics}
    parts.append(f"<p>Trained on the real train split, epoch chosen by validation AUC ({metrics.get('selected_epoch', '?')}), "
                 f"evaluated on the real test split with <b>{html.escape(positive)}</b> as the positive class. "
                 f"Weights: {html.escape(str(metrics.get('weights') or 'random initialisation'))}.</p>")
    parts.append(_table(pd.DataFrame([shown])))
    parts.append(_img(figures["history"], "classifier history"))

    parts.append("<h2>Seed 000: generated images judged by the classifier</h2>")
    parts.append(_table(seed000_table(summary, metrics, positive)))
    parts.append("<p class='note'>* The COVID-CT baseline's published figures, obtained with ImageNet-pretrained weights "
                 "on the full COVID-CT test split; this run trains from scratch on its own data, so compare the synthetic "
                 "share with the real share of the same classifier, not with the paper's number.</p>")
    parts.append("".join(f"<p>{html.escape(note)}</p>" for note in interpret_shares(summary, positive)))
    parts.append(_img(figures["scatter"], "positive rate per set"))
    parts.append(_table(share_summary_table(summary)))

    if inputs.benchmarks:
        parts.append("<h2>Stage timings</h2>")
        parts.append(_table(stage_table(inputs.benchmarks), "{:.1f}"))

    if inputs.config:
        parts.append("<h2>Configuration</h2><details><summary>validated config with all defaults</summary><pre>"
                     + html.escape(json.dumps(inputs.config, indent=2)) + "</pre></details>")
    parts.append("</body></html>")
    index = out_dir / "index.html"
    write_text(index, "\n".join(parts))
    return index
