"""End-to-end: the Snakemake workflow on a tiny phantom config, its caching, and its errors."""

import json

import pandas as pd
import pytest
import torch
from pathlib import Path

from wfutil import REPO, TINY, job_counts, snakemake

RULES = {"phantom_ct", "ingest", "preprocess", "train_dcgan", "generate_dcgan", "train_classifier", "score_dcgan", "report",
         "phantom_lus", "train_lusgan", "generate_lusgan", "similarity_lusgan",
         "preprocess_segmentation", "augment_cgan", "train_cgan", "generate_cgan", "feature_extractor", "quality_cgan",
         "cgan_tables", "augment_segtest", "unet_cell", "ablation_tables", "classifier_cell", "classifier_study"}

pytestmark = pytest.mark.slow


def _run_example(tmp_path, example: str, dataset: str, data: Path, target: str):
    """Run ``config/examples/<example>.yaml`` up to ``target`` with datasets.<dataset>.path = ``data``."""
    override = tmp_path / "where.yaml"
    override.write_text(f"datasets:\n  {dataset}:\n    path: {data}\n")
    return snakemake(tmp_path, target, configfiles=(REPO / "config" / "examples" / f"{example}.yaml", override))

def _four_images_per_class(root: Path) -> None:
    """``root/<covid|noncovid>/<class>_<i>.png``: four 20 x 20 gray images per class."""
    from PIL import Image

    for label in ("covid", "noncovid"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (20, 20), color=40 * i).save(root / label / f"{label}_{i}.png")

def _report_with(tiny_run: Path, *sections: str) -> Path:
    """The tiny run's results folder, once its report is seen to hold each section title."""
    results = tiny_run / "results"
    html = (results / "report" / "index.html").read_text()
    for section in sections:
        assert section in html
    return results




def test_dry_run_shows_the_whole_chain(tmp_path):
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    counts = job_counts(result.stdout + result.stderr)
    assert RULES <= set(counts)
    assert counts["train_dcgan"] == 2 and counts["generate_dcgan"] == 2
    assert counts["train_lusgan"] == 4 and counts["generate_lusgan"] == 4
    # globallocal, pix2pixhd and the no_desum variant: 3 steps each; pix2pix, spade, sean: 1
    assert counts["train_cgan"] == 3 * 3 + 3 and counts["generate_cgan"] == 6 and counts["quality_cgan"] == 6


def test_end_to_end_artifacts(tiny_run):
    results = _report_with(tiny_run, "Dataset", "Real vs synthetic images", "DCGAN training", "Classifier", "Seed 000")
    metrics = json.loads((results / "phantom_ct" / "classifier" / "metrics.json").read_text())
    assert metrics["positive_class"] == "covid" and 0 <= metrics["auc"] <= 1
    sets = pd.read_csv(results / "phantom_ct" / "dcgan" / "score" / "sets.csv")
    synthetic = sets[sets.source == "synthetic"]
    assert len(synthetic) == 2 * 2 and (synthetic["n"] == 4).all()
    assert (sets[sets.source == "real"]["n"] > 0).all()
    generated = torch.load(results / "phantom_ct" / "dcgan" / "covid" / "generated.pt", weights_only=True)["images"]
    assert generated.shape == (8, 1, 32, 32) and generated.dtype == torch.uint8
    assert len(list((results / "phantom_ct" / "dcgan" / "covid" / "generated").glob("*.png"))) == 8
    losses = pd.read_csv(results / "phantom_ct" / "dcgan" / "covid" / "losses.csv")
    assert len(losses) == losses["step"].max() + 1
    manifest = pd.read_csv(results / "phantom_ct" / "ingest" / "manifest.csv", dtype=str)
    assert manifest.groupby("patient")["split"].nunique().max() == 1


def test_end_to_end_ultrasound_branch(tiny_run):
    results = _report_with(tiny_run, "Lung ultrasound", "Generated vs real: all pairs per score",
                           "Diversity", "Memorization")
    manifest = pd.read_csv(results / "phantom_lus" / "ingest" / "manifest.csv", dtype=str)
    assert manifest.groupby("source")["split"].nunique().max() == 1  # no video straddles splits
    summary = pd.read_csv(results / "phantom_lus" / "lusgan" / "similarity" / "summary.csv", dtype={"score": str})
    assert set(summary["score"]) == {"0", "1", "2", "3"}
    assert set(summary["metric"]) == {"ms_ssim", "ssim", "psnr", "psnr_b", "rmse", "rase", "sam", "scc"}
    assert (summary["pairs"] == 8 * 8).all()
    diversity = pd.read_csv(results / "phantom_lus" / "lusgan" / "similarity" / "diversity.csv", dtype={"score": str})
    assert set(diversity["source"]) == {"generated", "real"}
    nearest = pd.read_csv(results / "phantom_lus" / "lusgan" / "similarity" / "nearest.csv", dtype={"score": str})
    assert len(nearest) == 4 * 8
    generated = torch.load(results / "phantom_lus" / "lusgan" / "0" / "generated.pt", weights_only=True)["images"]
    assert generated.shape == (8, 1, 32, 32) and generated.dtype == torch.uint8


def test_end_to_end_conditional_gan_branch(tiny_run):
    results = _report_with(tiny_run, "seed 001", "Image quality (seed 001's Table II)", "Ablations (seed 001's Table V",
                    "Synthesis from test label maps")
    table = pd.read_csv(results / "phantom_ct_seg" / "cgan" / "table2.csv")
    assert set(table["method"]) == {"globallocal", "pix2pix", "pix2pixhd", "spade", "sean", "no_desum"}
    assert set(table["metric"]) == {"FID", "KID", "PSNR", "SSIM", "RMSE"} and set(table["region"]) == {"complete", "lung"}
    assert table["value"].notna().all()
    test = torch.load(results / "phantom_ct_seg" / "cgan" / "data" / "test_aug.pt", weights_only=True)
    generated = torch.load(results / "phantom_ct_seg" / "cgan" / "sean" / "generated.pt", weights_only=True)
    assert generated["synthetic"].shape == test["images"].shape == (8, 1, 32, 32)
    outside = test["labels"] == 0
    assert torch.equal(generated["composite"][:, 0][outside], test["images"][:, 0][outside])
    for step in ("global", "local", "joint"):
        losses = pd.read_csv(results / "phantom_ct_seg" / "cgan" / "globallocal" / step / "losses.csv")
        assert len(losses) == 4  # 16 pairs / batch 8 x (1 + 1 epochs)
    joint = pd.read_csv(results / "phantom_ct_seg" / "cgan" / "globallocal" / "joint" / "losses.csv")
    assert joint["alpha"].between(0, 1, inclusive="neither").all()
    assert joint["beta"].between(0, 1, inclusive="neither").all()


def test_end_to_end_downstream_studies(tiny_run):
    results = tiny_run / "results"
    html = (results / "report" / "index.html").read_text()
    for section in ("Tables III and IV", "Table III: synthetic replaces real", "Table IV: synthetic added",
                    "Classifier trained with DCGAN images added"):
        assert section in html
    table = pd.read_csv(results / "phantom_ct_seg" / "ablation" / "tables.csv")
    assert set(table["mode"]) == {"replace", "add"} and set(table["ratio"]) == {0.0, 0.5}
    assert (table["n_seeds"] == 2).all() and (table["k"] == 2).all()
    assert (table["seed_high"] - table["seed_low"] >= table["fold_high"] - table["fold_low"] - 1e-12).all()
    # compare_at_max: a 50%-replace row for every comparator and Table V variant, and Table V's Dice column
    compared = set(table[(table["mode"] == "replace") & (table["ratio"] == 0.5)]["method"])
    assert compared == {"globallocal", "pix2pix", "pix2pixhd", "spade", "sean", "no_desum"}
    assert set(table[table["mode"] == "add"]["method"]) == {"real only", "globallocal"}
    assert "Table V, Dice column" in html
    replace = json.loads((results / "phantom_ct_seg" / "ablation" / "replace" / "globallocal" / "r0.50" / "s0"
                          / "summary.json").read_text())
    add = json.loads((results / "phantom_ct_seg" / "ablation" / "add" / "globallocal" / "r0.50" / "s0"
                      / "summary.json").read_text())
    assert replace["real"] + replace["synthetic"] == 8 and replace["synthetic"] == 4  # total fixed
    assert add["real"] == 8 and add["synthetic"] == 4  # real count fixed
    study = pd.read_csv(results / "phantom_ct" / "classifier_study" / "summary.csv")
    assert set(study["ratio"]) == {0.0, 0.5} and set(study["metric"]) == {"accuracy", "f1", "auc"}
    # the real-only cell of the baseline seed is the baseline classifier's run, not a second training
    assert not (results / "phantom_ct" / "classifier_study" / "r0.00" / "s0").exists()
    baseline = json.loads((results / "phantom_ct" / "classifier" / "metrics.json").read_text())
    row = study[(study["ratio"] == 0.0) & (study["metric"] == "auc")].iloc[0]
    assert row["mean"] == pytest.approx(baseline["auc"])


def test_second_run_has_nothing_to_do(tiny_run):
    results = tiny_run / "results"
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    result = snakemake(tiny_run)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
    assert job_counts(result.stdout + result.stderr) == {}
    after = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    assert after == before  # not one file rewritten


def test_changing_n_images_reruns_only_what_uses_the_generated_images(tiny_run):
    override = tiny_run / "more_images.yaml"
    override.write_text("dcgan:\n  generate:\n    n_images: 12\n")
    generator = tiny_run / "results" / "phantom_ct" / "dcgan" / "covid" / "generator.pt"
    before = generator.stat().st_mtime_ns
    planned = snakemake(tiny_run, "-n", configfiles=(TINY, override))
    # the classifier study trains on the generated images, so its cells rerun too; nothing upstream does
    assert set(job_counts(planned.stdout + planned.stderr)) == {"generate_dcgan", "score_dcgan", "classifier_cell",
                                                                "classifier_study", "report", "all"}
    result = snakemake(tiny_run, configfiles=(TINY, override))
    assert result.returncode == 0, result.stderr[-3000:]
    assert generator.stat().st_mtime_ns == before
    generated = torch.load(generator.with_name("generated.pt"), weights_only=True)["images"]
    assert len(generated) == 12
    # put the shared run back to the tiny config for the tests after this one
    assert snakemake(tiny_run).returncode == 0


def test_invalid_config_stops_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dcgan:\n  train:\n    learning_rate: 0.1\n")
    result = snakemake(tmp_path, "-n", configfiles=(TINY, bad))
    assert result.returncode != 0
    assert "unknown config key dcgan.train.learning_rate" in result.stdout + result.stderr


def test_bad_input_file_stops_naming_it_and_leaves_no_manifest(tmp_path):
    _four_images_per_class(tmp_path / "data")
    (tmp_path / "data" / "covid" / "covid_3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    config = tmp_path / "folder.yaml"
    config.write_text(
        "datasets:\n  mine:\n    format: image_folder\n    path: data\n"
        "dcgan:\n  dataset: mine\n"
    )
    target = "results/mine/ingest/manifest.csv"
    result = snakemake(tmp_path, target, configfiles=(TINY, config))
    assert result.returncode != 0
    assert "covid_3.png" in result.stdout + result.stderr
    ingest_dir = tmp_path / "results" / "mine" / "ingest"
    assert not ingest_dir.exists() or not list(ingest_dir.iterdir())


@pytest.mark.realdata
def test_semiseg_example_builds_label_maps_with_derived_lungs(tmp_path, realdata_dir):
    """config/examples/covid_semiseg.yaml up to the augmented pairs on the real COVID-SemiSeg sample."""
    target = "results/covid_semiseg/cgan/data/train_aug.pt"
    result = _run_example(tmp_path, "covid_semiseg", "covid_semiseg", realdata_dir / "covid-semiseg" / "train", target)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "covid_semiseg" / "segmentation" / "summary.json").read_text())
    assert summary["lung_mask"]["derived"] == sum(summary["counts"][s]["slices"] for s in ("train", "val", "test"))
    data = torch.load(tmp_path / target, weights_only=True)
    assert data["images"].shape == (480, 1, 128, 128) and set(data["labels"].unique().tolist()) == {0, 1, 2, 3}


@pytest.mark.realdata
def test_example_config_ingests_and_preprocesses_real_covid_ct(tmp_path, realdata_dir):
    """config/examples/covid_ct.yaml up to the cached tensors on the real COVID-CT sample."""
    result = _run_example(tmp_path, "covid_ct", "covid_ct", realdata_dir / "covid-ct",
                          "results/covid_ct/preprocessed/summary.json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "covid_ct" / "preprocessed" / "summary.json").read_text())
    counts = summary["counts"]
    assert sum(counts[s]["covid"] for s in ("train", "val", "test")) == 191
    assert sum(counts[s]["noncovid"] for s in ("train", "val", "test")) == 234
    manifest = pd.read_csv(tmp_path / "results" / "covid_ct" / "ingest" / "manifest.csv", dtype=str)
    assert manifest.groupby("patient")["split"].nunique().max() == 1


def test_skip_mode_leaves_bad_file_out_and_lists_it(tmp_path):
    _four_images_per_class(tmp_path / "data")
    (tmp_path / "data" / "noncovid" / "noncovid_0.png").write_bytes(b"not an image")
    config = tmp_path / "skip.yaml"
    config.write_text(
        "datasets:\n  mine:\n    format: image_folder\n    path: data\n    on_bad_file: skip\n"
        "    split: {fractions: {train: 0.5, val: 0.25, test: 0.25}}\n"
        "dcgan:\n  dataset: mine\n"
    )
    result = snakemake(tmp_path, "results/mine/ingest/manifest.csv", configfiles=(TINY, config))
    assert result.returncode == 0, result.stderr[-3000:]
    skipped = pd.read_csv(tmp_path / "results" / "mine" / "ingest" / "skipped.csv")
    assert skipped["path"].str.contains("noncovid_0.png").any()
    manifest = pd.read_csv(tmp_path / "results" / "mine" / "ingest" / "manifest.csv", dtype=str)
    assert len(manifest) == 7


def test_changing_one_class_setting_retrains_that_class_only(tiny_run):
    override = tiny_run / "covid_longer.yaml"
    override.write_text("dcgan:\n  per_class:\n    covid:\n      epochs: 4\n")
    planned = snakemake(tiny_run, "-n", configfiles=(TINY, override))
    output = planned.stdout + planned.stderr
    # that class's GAN and everything downstream of its images; nothing of the other class, nothing upstream
    assert job_counts(output) == {"train_dcgan": 1, "generate_dcgan": 1, "score_dcgan": 1, "classifier_cell": 1,
                                  "classifier_study": 1, "report": 1, "all": 1}
    assert "label=covid" in output and "label=noncovid" not in output


def test_changing_a_scoring_setting_reruns_scoring_and_report_only(tiny_run):
    override = tiny_run / "smaller_sets.yaml"
    override.write_text("score:\n  set_size: 2\n")
    planned = snakemake(tiny_run, "-n", configfiles=(TINY, override))
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert job_counts(planned.stdout + planned.stderr) == {"score_dcgan": 1, "report": 1, "all": 1}
    result = snakemake(tiny_run, configfiles=(TINY, override))
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr) == {"score_dcgan": 1, "report": 1, "all": 1}
    sets = pd.read_csv(tiny_run / "results" / "phantom_ct" / "dcgan" / "score" / "sets.csv")
    synthetic = sets[sets.source == "synthetic"]
    assert len(synthetic) == 2 * 2 and (synthetic["n"] == 2).all()  # 2 classes x 2 sets of 2 images
    # put the shared run back to the tiny config, and nothing is left to do
    assert snakemake(tiny_run).returncode == 0
    again = snakemake(tiny_run)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.realdata
def test_lus_mat_example_ingests_and_preprocesses_real_pocus(tmp_path, realdata_dir):
    """config/examples/lus_pocus_mat.yaml up to the cached tensors on the real POCUS .mat files."""
    result = _run_example(tmp_path, "lus_pocus_mat", "pocus_mat", realdata_dir / "lus-pocus" / "mat",
                          "results/pocus_mat/preprocessed/summary.json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "pocus_mat" / "preprocessed" / "summary.json").read_text())
    assert summary["classes"] == ["0", "1", "2", "3"]
    assert all(summary["counts"]["train"][score] > 0 for score in summary["classes"])
    assert summary["size"] == 64
