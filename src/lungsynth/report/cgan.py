"""Report sections of the conditional-GAN branch (seed 001): data, Table II, Table V (image quality), cases."""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lungsynth.artifacts import torch_load
from lungsynth.methods.cgan.specs import method_label, METHODS
from lungsynth.report.html import embedded_png, html_table

METRIC_ORDER = ("FID", "KID", "PSNR", "SSIM", "RMSE")
# Seed 001's Table II (complete images) as published, for orientation only: FID on Inception features
# of 10,220 images at 512 px is not comparable with FID on the domain extractor here (see the note).
PAPER_TABLE2_NOTE = ("Seed 001 reports FID on Inception features of 10,220 augmented test images; lungsynth's FID uses "
                     "a domain feature extractor trained on this dataset's real training pairs (unless Inception weights "
                     "are supplied), on far fewer images, so the numbers are comparable between methods here and not "
                     "with the paper's. FID is also biased upwards at small N; KID is unbiased.")


@dataclass
class CGANReportInputs:
    """Artifacts of the conditional-GAN branch."""

    dataset: str
    summary: Path
    table: Path
    cases: Path
    losses: dict[str, list[Path]] = field(default_factory=dict)
    generated: dict[str, Path] = field(default_factory=dict)


def _fmt(value: float, low: float, high: float, metric: str) -> str:
    if value != value:
        return "n/a"
    digits = {"FID": "{:.3g}", "KID": "{:.3g}", "PSNR": "{:.2f}", "SSIM": "{:.3f}", "RMSE": "{:.2f}"}[metric]
    if low != low:
        return digits.format(value)
    return f"{digits.format(value)} [{digits.format(low)}, {digits.format(high)}]"


def quality_pivot(table: pd.DataFrame, methods: list[str], regions=("complete", "lung"),
                  metrics=METRIC_ORDER) -> pd.DataFrame:
    """Rows = methods; columns = '<region> <metric>' with 'value [low, high]' cells."""
    rows = []
    for method in methods:
        part = table[table["method"] == method]
        row = {"method": method_label(method)}
        for region in regions:
            for metric in metrics:
                hit = part[(part["region"] == region) & (part["metric"] == metric)]
                row[f"{region} {metric}"] = (_fmt(*(float(hit[c].iloc[0]) for c in ("value", "low", "high")), metric)
                                             if len(hit) else "n/a")
        rows.append(row)
    return pd.DataFrame(rows)


def training_table(losses: dict[str, list[Path]], generated: dict[str, Path]) -> pd.DataFrame:
    """Per method: iterations per step, final alpha/beta (mean of the last 10% of iterations), synthesis speed."""
    rows = []
    for method, paths in losses.items():
        row: dict = {"method": method_label(method)}
        steps = []
        last = None
        for path in paths:
            frame = pd.read_csv(path)
            steps.append(f"{Path(path).parent.name} {len(frame)}")
            last = frame
        row["iterations per step"] = ", ".join(steps)
        tail = last.tail(max(1, len(last) // 10)) if last is not None and len(last) else None
        for column in ("alpha", "beta"):
            row[f"final {column}"] = float(tail[column].mean()) if tail is not None and tail[column].notna().any() else float("nan")
        if method in generated:
            row["synthesis (images/s)"] = float(torch_load(generated[method])["images_per_second"])
        rows.append(row)
    return pd.DataFrame(rows)


def cgan_sections(inputs: CGANReportInputs, out_dir: Path) -> list[str]:
    """HTML parts of the branch (figures written into ``out_dir`` and embedded)."""
    summary = json.loads(Path(inputs.summary).read_text())
    table = pd.read_csv(inputs.table)
    methods = list(dict.fromkeys(table["method"]))
    parts = [f"<h2>Dataset: {html.escape(inputs.dataset)}</h2>"]
    counts = summary.get("counts", {})
    if counts:
        frame = pd.DataFrame([{"split": k, **(v if isinstance(v, dict) else {"slices": v})} for k, v in counts.items()])
        order = [c for c in ("split", "slices", "patients", "dropped_without_infection") if c in frame]
        frame = frame[order + [c for c in frame if c not in order]].rename(
            columns={"dropped_without_infection": "dropped (no infection)"})
        parts.append(html_table(frame.set_index("split").reindex([s for s in ("train", "val", "test") if s in
                                                                 set(frame["split"])]).reset_index()))
    lung = summary.get("lung_mask", {})
    if isinstance(lung, dict) and lung:
        parts.append(f"<p>Lung masks (mode <b>{html.escape(str(lung.get('mode')))}</b>): {lung.get('given', 0)} given, "
                     f"{lung.get('derived', 0)} derived. Only slices with infection are used "
                     "(seed 001 kept 446 of 829).</p>")
        if lung.get("derived"):
            parts.append(f"<p class='note'>Derivation: {html.escape(str(lung.get('method', '')))}</p>")
    dice = summary.get("lung_dice") or (lung.get("lung_dice") if isinstance(lung, dict) else None)
    if dice:
        parts.append(f"<p>Derived lung masks vs the dataset's own: Dice mean {dice['mean']:.3f}, minimum {dice['min']:.3f} "
                     f"over {dice['n']} slices.</p>")

    cases = out_dir / "cgan_cases.png"
    shutil.copyfile(inputs.cases, cases)
    parts.append("<h2>Synthesis from test label maps</h2>")
    parts.append("<p class='note'>Rows: test cases from low to high lesion burden. Columns: label map (black outside the "
                 "lung, grey lung, light ground-glass, white consolidation), the real slice, each method's synthetic slice. "
                 "The composite images used downstream paste the synthetic lung into the real non-lung area.</p>")
    parts.append(embedded_png(cases, "map, real and synthetic slices per method"))

    main = [m for m in methods if m in METHODS]
    parts.append("<h2>Image quality (seed 001's Table II)</h2>")
    parts.append("<p class='note'>Each synthetic image against the real slice of the same (augmented) test map. "
                 "PSNR, SSIM (Gaussian 11/1.5, 'valid'), RMSE (0..255 scale): mean [95% t interval] over image pairs; "
                 "FID and KID: value [bootstrap 95% interval]. Lung-only: pixel metrics inside the lung mask, FID/KID on "
                 f"images with the non-lung area set to black. SEAN encodes its per-region style codes from the real "
                 "slice of each test map (its authors' protocol), an advantage the other methods lack. "
                 f"{html.escape(PAPER_TABLE2_NOTE)}</p>")
    features = str(table["features"].iloc[0]) if "features" in table and len(table) else ""
    if features:
        parts.append(f"<p class='note'>Features for FID/KID: {html.escape(features)}.</p>")
    parts.append(html_table(quality_pivot(table, main)))
    iterations = [len(pd.read_csv(p)) for paths in inputs.losses.values() for p in paths]
    if iterations and max(iterations) < 1000:
        parts.append(f"<p class='warn'>Every training step ran at most {max(iterations)} iterations (CPU-sized "
                     "settings): the table ranks how far each method gets in that budget, not its converged quality. "
                     "The paper trained 20 epochs of 12,000 pairs per step.</p>")
    variants = [m for m in methods if m not in METHODS]
    if variants:
        parts.append("<h2>Ablations (seed 001's Table V, image-quality columns)</h2>")
        rows = (["globallocal"] if "globallocal" in methods else []) + variants
        parts.append(html_table(quality_pivot(table, rows, regions=("complete",), metrics=("FID", "KID", "PSNR", "SSIM"))))
    if inputs.losses:
        parts.append("<h2>Conditional GAN training</h2>")
        parts.append("<p class='note'>alpha = DESUM weight of G2's own features (1 - alpha on G1's); beta = DFM weight of "
                     "the full-resolution discriminator's feature matching. Both are means over the last 10% of the final "
                     "step's iterations.</p>")
        parts.append(html_table(training_table(inputs.losses, inputs.generated)))
    return parts
