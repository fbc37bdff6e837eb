"""The HTML report: dataset, real vs synthetic images, training, classifier and seed 000's table.

The page is one self-contained ``index.html`` (figures embedded as PNG data URIs);
the same figures are also written as PNG files beside it for ``snakemake --report``.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lungsynth import __version__
from lungsynth.figures import classifier_history, loss_curves, positive_rate_scatter
from lungsynth.config import train_settings
from lungsynth.methods.data_efficient import describe_recipe
from lungsynth.methods.unconditional import image_grid, save_png
from lungsynth.data.ingest import read_files, read_manifest
from lungsynth.artifacts import write_text
from lungsynth.data.preprocess import load_split
from lungsynth.report.studies import AblationReportInputs, ablation_sections
from lungsynth.report.cgan import CGANReportInputs, cgan_sections
from lungsynth.report.html import embedded_png, html_table, percent

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
    """Paths of the artifacts one report is built from; a branch whose paths are None is left out."""

    dataset: str | None = None
    manifest: Path | None = None
    skipped: Path | None = None
    files: Path | None = None
    preprocess_summary: Path | None = None
    train_split: Path | None = None
    generated_grids: dict[str, Path] = field(default_factory=dict)
    losses: dict[str, Path] = field(default_factory=dict)
    classifier_metrics: Path | None = None
    classifier_history: Path | None = None
    score_sets: Path | None = None
    score_summary: Path | None = None
    positive_class: str = "covid"
    lus: "LUSReportInputs | None" = None
    cgan: "CGANReportInputs | None" = None
    ablation: "AblationReportInputs | None" = None
    benchmarks: list[Path] = field(default_factory=list)
    config: dict = field(default_factory=dict)


@dataclass
class LUSReportInputs:
    """Artifacts of the lung-ultrasound branch (seed 003)."""

    dataset: str
    manifest: Path
    skipped: Path
    train_split: Path
    generated_grids: dict[str, Path]
    losses: dict[str, Path]
    similarity_summary: Path
    diversity: Path
    nearest: Path
    values: Path
    files: Path | None = None


def reading_table(files: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """How the files were read (``files.csv`` of the ingest step): one row per distinct reading, with notes.

    Rows: reading (``how_read``), format, files, slices in the manifest and an
    example file, most common reading first. Notes flag the files whose
    ambiguous layout the auto rule resolved (``H x W x 3`` read as one RGB
    frame) and those the ``mat_layout`` setting decided.
    """
    files = files.astype(str)
    rows = []
    for (how, fmt), group in files.groupby(["how_read", "format"], sort=False):
        rows.append({"reading": how, "format": fmt, "files": len(group),
                     "slices": int(pd.to_numeric(group["slices"], errors="coerce").fillna(0).sum()),
                     "example file": group["source"].iloc[0]})
    table = pd.DataFrame(rows, columns=["reading", "format", "files", "slices", "example file"])
    table = table.sort_values("files", ascending=False, kind="stable").reset_index(drop=True)
    notes = []
    resolved = files.get("resolved_by", pd.Series("", index=files.index))
    auto = files[resolved == "auto rule"]
    if len(auto):
        notes.append(f"{len(auto)} .mat file(s) hold an H x W x 3 array, read as one RGB frame by the auto rule "
                     f"(e.g. {auto['source'].iloc[0]}); if they are 3-frame gray clips, set the dataset's "
                     "mat_layout: HWN.")
    by_setting = files[resolved == "mat_layout"]
    if len(by_setting):
        notes.append(f"The dataset's mat_layout setting decided the layout of {len(by_setting)} .mat file(s).")
    return table, notes


def _reading_section(path: Path | None) -> list[str]:
    """The "how the files were read" summary of a dataset (nothing when ``path`` is None)."""
    if path is None:
        return []
    table, notes = reading_table(read_files(path))
    parts = [f"<p>How the {int(table['files'].sum())} source file(s) were read:</p>", html_table(table)]
    parts += [f"<p class='warn'>{html.escape(n)}</p>" for n in notes]
    return parts


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
        return f"{percent(r['mean_share_positive'])} [{percent(r['ci_low'])}, {percent(r['ci_high'])}]"

    return pd.DataFrame([
        {"quantity": f"generated {positive} predicted {positive} (mean of sets, CI)", "seed 000 paper": "~40% (no CI)", "this run": share("synthetic")},
        {"quantity": f"real {positive} test images predicted {positive}", "seed 000 paper": "not reported", "this run": share("real")},
        {"quantity": "classifier accuracy (real test)", "seed 000 paper": f"{PAPER_BASELINE['accuracy']:.3f}*", "this run": f"{metrics['accuracy']:.3f}"},
        {"quantity": f"classifier F1 ({positive} positive)", "seed 000 paper": f"{PAPER_BASELINE['f1']:.3f}*", "this run": f"{metrics['f1']:.3f}"},
        {"quantity": "classifier AUC", "seed 000 paper": f"{PAPER_BASELINE['auc']:.3f}*", "this run": f"{metrics['auc']:.3f}"},
    ])


def _schedule_changes(branch: str, settings: dict) -> dict[str, bool]:
    """The learning-rate schedule of one model where it departs from its paper's: the DCGAN's
    ``lr_d`` (TTUR; the paper has one lr), the LUS GANs' ``lr_g``/``lr_d`` and G steps per D step
    against seed 003's (the schema defaults)."""
    if branch == "dcgan":
        lr_d = settings.get("lr_d")
        return {f"TTUR (lr_d {lr_d:g})": True} if lr_d is not None else {}
    from lungsynth.methods.lusgan.train import LUSSettings

    paper = LUSSettings()
    lr_g, lr_d = settings.get("lr_g", paper.lr_g), settings.get("lr_d", paper.lr_d)
    g_steps = settings.get("g_steps_per_d", paper.g_steps_per_d)
    return {f"lr_g {lr_g:g} / lr_d {lr_d:g}": (lr_g, lr_d) != (paper.lr_g, paper.lr_d),
            f"{g_steps} G step{'s' if g_steps > 1 else ''} per D step": g_steps != paper.g_steps_per_d}


def recipe_table(config: dict, branch: str, paper: str) -> pd.DataFrame:
    """One row per trained model of ``branch`` (``dcgan`` or ``lusgan``): its class and the recipe it used
    (:func:`lungsynth.methods.data_efficient.describe_recipe`; ``per_class`` overrides included).

    For ``cgan`` one row per configured method or variant, named after it (``paper`` unused): each
    method's own published recipe, plus the data-efficient switches of ``cgan.train``, which all share.
    """
    section, model = config[branch], config[branch].get("model", {})
    if branch == "cgan":
        from lungsynth.methods.cgan.specs import configured_methods, method_label

        return pd.DataFrame([{"model": method, "recipe": describe_recipe(section["train"], method_label(method))}
                             for method in configured_methods(section)])
    model_changes = {"critic spectral norm": bool(model.get("spectral_norm", False)),
                     f"critic minibatch std (groups of {model.get('minibatch_std', 0)})": bool(model.get("minibatch_std", 0)),
                     "improved generator": model.get("generator") == "improved"}
    rows = []
    for label in section["classes"]:
        settings = train_settings(config, str(label), branch)
        changes = model_changes | _schedule_changes(branch, settings)
        rows.append({"model": str(label), "recipe": describe_recipe(settings, paper, changes)})
    return pd.DataFrame(rows)


def _recipe_section(config: dict, branch: str, paper: str) -> list[str]:
    if branch not in config or ("classes" not in config[branch] and "methods" not in config[branch]):
        return []
    return ["<h2>Training recipe</h2><p class='note'>The paper's recipe, or the paper's with the data-efficient "
            "switches named (README, 'Data-efficient GAN training').</p>", html_table(recipe_table(config, branch, paper))]


def stage_table(paths: list[Path]) -> pd.DataFrame:
    """Wall time and peak memory per job from Snakemake ``benchmark:`` TSVs (``<rule>/<job>.tsv``)."""
    rows = []
    for path in map(Path, paths):
        frame = pd.read_csv(path, sep="\t")
        parts = path.with_suffix("").parts
        at = parts.index("benchmarks") + 1 if "benchmarks" in parts[:-2] else len(parts) - 2
        rows.append({"stage": parts[at], "job": "/".join(parts[at + 1 :]), "seconds": float(frame["s"].iloc[0]),
                     "max RSS (MB)": float(frame["max_rss"].iloc[0])})
    return pd.DataFrame(rows, columns=["stage", "job", "seconds", "max RSS (MB)"])


def share_summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The score summary with shares as percentages and intervals in brackets."""
    rows = []
    for r in summary.itertuples(index=False):
        rows.append({
            "source": r.source, "class": r[1], "images": r.n_images, "sets": r.n_sets,
            "mean share of sets [CI]": f"{percent(r.mean_share_positive)} [{percent(r.ci_low)}, {percent(r.ci_high)}]",
            "pooled share [Wilson CI]": f"{percent(r.pooled_share_positive)} [{percent(r.pooled_ci_low)}, {percent(r.pooled_ci_high)}]",
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
        notes.append(f"The classifier calls {percent(synth)} of generated {positive} images {positive}, "
                     f"against {percent(real)} of real {positive} test images.")
    negatives = [label for label in summary["class"].unique() if label != positive]
    for label in negatives:
        synth_neg, real_neg = pooled("synthetic", label), pooled("real", label)
        if synth_neg == synth_neg and real_neg == real_neg:
            notes.append(f"Generated {label} images are called {positive} {percent(synth_neg)} of the time "
                         f"(real {label}: {percent(real_neg)}).")
            if synth_neg >= 0.5 and synth_neg - real_neg > 0.25:
                notes.append(f"Warning: generated images of both classes are called {positive}, so the classifier is "
                             "reacting to generator artefacts rather than to class features; a high synthetic "
                             f"{positive} rate here is not evidence of realistic lesions. Train longer or at paper settings.")
    return notes


def _dcgan_sections(inputs: ReportInputs, out_dir: Path) -> list[str]:
    """Seed 000: dataset, real vs synthetic grids, DCGAN losses, classifier, positive shares."""
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

    parts = [f"<h2>Dataset: {html.escape(str(inputs.dataset))}</h2>"]
    units = set(manifest["unit"])
    scaling = []
    if "HU" in units:
        scaling.append(f"HU window {prep['window']}")
    if "8bit" in units:
        scaling.append(f"8-bit sources normalised ({prep.get('normalise_8bit', 'percentile')})")
    parts.append(f"<p>{len(manifest)} slices from {manifest['patient'].nunique()} patients; splits are patient-level and stratified by class. "
                 f"Preprocessed to {prep['size']}&times;{prep['size']}, {prep['channels']} channel(s), {'; '.join(scaling)}.</p>")
    parts.append(html_table(dataset_table(manifest)))
    parts += _reading_section(inputs.files)
    if len(skipped):
        parts.append(f"<p class='warn'>{len(skipped)} file(s) were skipped as unreadable or inconsistent:</p>")
        parts.append(html_table(skipped))
    else:
        parts.append("<p class='note'>No files were skipped.</p>")

    parts.append("<h2>Real vs synthetic images</h2><div class='grids'>")
    for label in inputs.generated_grids:
        if f"real_{label}" in figures:
            parts.append(f"<figure>{embedded_png(figures[f'real_{label}'], f'real {label}')}<figcaption>real {html.escape(label)} (train split)</figcaption></figure>")
        parts.append(f"<figure>{embedded_png(figures[f'synthetic_{label}'], f'synthetic {label}')}<figcaption>synthetic {html.escape(label)} (DCGAN)</figcaption></figure>")
    parts.append("</div>")

    parts.append("<h2>DCGAN training</h2>")
    parts.append(embedded_png(figures["losses"], "loss curves"))

    parts.append("<h2>Classifier (DenseNet-169, real data)</h2>")
    shown = {k: metrics[k] for k in ("accuracy", "f1", "auc", "sensitivity", "specificity", "n", "n_positive") if k in metrics}
    parts.append(f"<p>Trained on the real train split, epoch chosen by validation AUC ({metrics.get('selected_epoch', '?')}), "
                 f"evaluated on the real test split with <b>{html.escape(positive)}</b> as the positive class. "
                 f"Weights: {html.escape(str(metrics.get('weights') or 'random initialisation'))}.</p>")
    parts.append(html_table(pd.DataFrame([shown])))
    parts.append(embedded_png(figures["history"], "classifier history"))

    parts.append("<h2>Seed 000: generated images judged by the classifier</h2>")
    parts.append(html_table(seed000_table(summary, metrics, positive)))
    parts.append("<p class='note'>* The COVID-CT baseline's published figures, obtained with ImageNet-pretrained weights "
                 "on the full COVID-CT test split; this run trains from scratch on its own data, so compare the synthetic "
                 "share with the real share of the same classifier, not with the paper's number.</p>")
    parts.append("".join(f"<p>{html.escape(note)}</p>" for note in interpret_shares(summary, positive)))
    parts.append(embedded_png(figures["scatter"], "positive rate per set"))
    parts.append(html_table(share_summary_table(summary)))

    return parts


def diversity_table(diversity: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Generated vs real MS-SSIM among images of one score, side by side, with mode-collapse warnings.

    Higher MS-SSIM among images = less diverse. Generated images that are much more alike than
    real frames of the same score are the signature of mode collapse.
    """
    rows, notes = [], []
    for score, group in diversity.groupby("score", sort=True):
        cell = {}
        for source in ("generated", "real"):
            r = group[group["source"] == source]
            if len(r):
                r = r.iloc[0]
                cell[source] = r
        if not cell:
            continue
        row = {"score": score}
        for source, r in cell.items():
            row[f"{source} MS-SSIM mean [CI]"] = f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            row[f"{source} images"] = int(r["n"])
        rows.append(row)
        if "generated" in cell and "real" in cell and cell["generated"]["mean"] > cell["real"]["mean"] + 0.1:
            notes.append(f"Score {score}: generated images are more alike ({cell['generated']['mean']:.2f}) than real frames "
                         f"({cell['real']['mean']:.2f}): a sign of mode collapse.")
    return pd.DataFrame(rows), notes


def _lus_sections(lus: LUSReportInputs, out_dir: Path) -> list[str]:
    """Seed 003: per-score grids, losses, similarity distributions, diversity, memorization."""
    import torch

    from lungsynth.figures import metric_boxplots

    manifest = read_manifest(lus.manifest)
    skipped = pd.read_csv(lus.skipped, dtype=str, keep_default_na=False)
    summary = pd.read_csv(lus.similarity_summary, dtype={"score": str})
    diversity = pd.read_csv(lus.diversity, dtype={"score": str})
    nearest = pd.read_csv(lus.nearest, dtype={"score": str})
    values = torch.load(lus.values, map_location="cpu", weights_only=True)
    scores = list(lus.generated_grids)
    parts = [f"<h2>Dataset: {html.escape(lus.dataset)}</h2>"]
    counts = []
    for score, group in manifest.groupby("class"):
        row = {"score": score, "videos": group["source"].nunique(), "patients": group["patient"].nunique()}
        for split in ("train", "val", "test"):
            row[f"{split} frames"] = int((group["split"] == split).sum())
        counts.append(row)
    parts.append(f"<p>{len(manifest)} frames from {manifest['source'].nunique()} videos of {manifest['patient'].nunique()} "
                 "patients; splits never divide a patient's (or video's) frames.</p>")
    parts.append(html_table(pd.DataFrame(counts)))
    parts += _reading_section(lus.files)
    if len(skipped):
        parts.append(f"<p class='warn'>{len(skipped)} file(s) were skipped:</p>" + html_table(skipped))

    parts.append("<h2>Real vs synthetic frames per severity score</h2><div class='grids'>")
    train = load_split(lus.train_split)
    for score in scores:
        if score in train["classes"]:
            real = train["images"][train["labels"] == train["classes"].index(score)]
            path = out_dir / f"lus_real_{score}.png"
            save_png(image_grid(real, 16), path)
            parts.append(f"<figure>{embedded_png(path, f'real score {score}')}<figcaption>real, score {html.escape(score)}</figcaption></figure>")
        synthetic = out_dir / f"lus_synthetic_{score}.png"
        shutil.copyfile(lus.generated_grids[score], synthetic)
        parts.append(f"<figure>{embedded_png(synthetic, f'synthetic score {score}')}<figcaption>synthetic, score {html.escape(score)}</figcaption></figure>")
    parts.append("</div>")

    losses_png = out_dir / "lus_loss_curves.png"
    loss_curves({score: pd.read_csv(path) for score, path in lus.losses.items()}, losses_png, title="score")
    parts.append("<h2>GAN training</h2>" + embedded_png(losses_png, "LUS loss curves"))

    metrics = list(dict.fromkeys(summary["metric"]))
    box_png = out_dir / "lus_similarity_boxplots.png"
    metric_boxplots(values, scores, metrics, box_png)
    parts.append("<h2>Generated vs real: all pairs per score</h2>")
    reference = str(summary["reference"].iloc[0]) if "reference" in summary and len(summary) else "test"
    where = ("real frames of unseen test videos" if reference == "test"
             else "the real training frames (no unseen video exists for some score)")
    parts.append(f"<p class='note'>Every generated image against every one of {where} of the same score (not generated "
                 "images against themselves, the error in seed 003's code). Table: mean [CI] over generated images of each "
                 "image's mean over its pairs. MS-SSIM and SSIM use the Gaussian-window, clamped convention of pytorch-msssim "
                 f"(MS-SSIM with {int(summary['ms_ssim_scales'].iloc[0]) if 'ms_ssim_scales' in summary else 5} scales at this "
                 "image size; 5-scale values are not comparable); RASE the torchmetrics convention; SAM is the angle between "
                 "flattened images.</p>")
    parts.append(embedded_png(box_png, "similarity distributions"))
    table = summary.assign(**{"mean [CI]": [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for m, lo, hi in
                                             zip(summary["mean"], summary["ci_low"], summary["ci_high"])]})
    parts.append(html_table(table.pivot(index="score", columns="metric", values="mean [CI]").reset_index()[["score", *metrics]]))

    parts.append("<h2>Diversity (mode collapse check)</h2>")
    parts.append("<p class='note'>Like seed 003's Table 1, but over all pairs (each image's mean MS-SSIM to the others, "
                 "interval over images), beside real frames of the same score. Real frames of one video are alike, so the "
                 "real figure is itself an upper reference.</p>")
    div_table, div_notes = diversity_table(diversity)
    parts.append(html_table(div_table))
    parts.append("".join(f"<p class='warn'>{html.escape(n)}</p>" for n in div_notes))

    parts.append("<h2>Memorization</h2>")
    flagged = nearest[nearest["near_copy"].astype(str).str.lower() == "true"]
    rows = []
    for score, group in nearest.groupby("score", sort=True):
        near = group[group["near_copy"].astype(str).str.lower() == "true"]
        rows.append({"score": score, "generated": len(group), "near-copies": len(near),
                     "median MS-SSIM to nearest train frame": float(group["similarity"].median()),
                     "max": float(group["similarity"].max())})
    parts.append("<p>Each generated image's most similar training frame (MS-SSIM); images at or above the threshold are "
                 "flagged as near-copies of the training data.</p>")
    parts.append(html_table(pd.DataFrame(rows)))
    if len(flagged):
        parts.append(f"<p class='warn'>{len(flagged)} generated image(s) are near-copies of training frames.</p>")
    return parts


def build_report(inputs: ReportInputs, out_dir: str | Path, title: str = "lungsynth report") -> Path:
    """Write ``out_dir/index.html`` and the figure PNGs of every branch present; return the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = ", ".join(d for d in (inputs.dataset if inputs.manifest else None,
                                     inputs.lus.dataset if inputs.lus else None,
                                     inputs.cgan.dataset if inputs.cgan else None) if d)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='note'>lungsynth {__version__} &middot; datasets <b>{html.escape(datasets)}</b></p>"]
    if inputs.manifest is not None:
        parts.append("<h1>COVID CT: DCGAN per class (seed 000)</h1>")
        parts += _dcgan_sections(inputs, out_dir)
        parts += _recipe_section(inputs.config, "dcgan", "seed 000 (DCGAN)")
    if inputs.lus is not None:
        parts.append("<h1>Lung ultrasound: GAN per severity score (seed 003)</h1>")
        parts += _lus_sections(inputs.lus, out_dir)
        parts += _recipe_section(inputs.config, "lusgan", "seed 003")
    if inputs.cgan is not None:
        parts.append("<h1>COVID CT: conditional GANs, segmentation map to CT (seed 001)</h1>")
        parts += cgan_sections(inputs.cgan, out_dir)
        parts += _recipe_section(inputs.config, "cgan", "seed 001")
    if inputs.ablation is not None:
        parts.append("<h1>Downstream use of the synthetic images</h1>")
        parts += ablation_sections(inputs.ablation, out_dir)
    if inputs.benchmarks:
        parts.append("<h2>Stage timings</h2>")
        parts.append(html_table(stage_table(inputs.benchmarks), "{:.1f}"))

    if inputs.config:
        parts.append("<h2>Configuration</h2><details><summary>validated config with all defaults</summary><pre>"
                     + html.escape(json.dumps(inputs.config, indent=2)) + "</pre></details>")
    parts.append("</body></html>")
    index = out_dir / "index.html"
    write_text(index, "\n".join(parts))
    return index
