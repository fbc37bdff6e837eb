"""``device`` reaches every GPU-tagged job: on a machine without CUDA, ``device: cuda`` must make each one fail
with the select_device error instead of quietly running on the CPU (which ``auto`` and ``cpu`` would do alike)."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from wfutil import REPO, TINY, snakemake

pytestmark = pytest.mark.slow

CUDA_EVERYWHERE = """
dcgan: {train: {device: cuda}}
classifier: {device: cuda}
lusgan: {train: {device: cuda}, similarity: {device: cuda}}
cgan: {train: {device: cuda}, quality: {device: cuda}}
ablation: {segmentation: {train: {device: cuda}}}
"""

# one job of each GPU-tagged rule in the tiny run, consumers before producers: a failed job's outputs are
# removed, so a producer forced first would take its consumers' inputs with it
TARGETS = {
    "score_dcgan": "results/phantom_ct/dcgan/score/summary.csv",
    "classifier_cell": "results/phantom_ct/classifier_study/r0.50/s0/metrics.json",
    "generate_dcgan": "results/phantom_ct/dcgan/covid/generated.pt",
    "train_classifier": "results/phantom_ct/classifier/model.pt",
    "train_dcgan": "results/phantom_ct/dcgan/covid/generator.pt",
    "similarity_lusgan": "results/phantom_lus/lusgan/similarity/summary.csv",
    "generate_lusgan": "results/phantom_lus/lusgan/0/generated.pt",
    "train_lusgan": "results/phantom_lus/lusgan/0/generator.pt",
    "quality_cgan": "results/phantom_ct_seg/cgan/quality/globallocal.csv",
    "unet_cell": "results/phantom_ct_seg/ablation/real/none/r0.00/s0/model.pt",
    "generate_cgan": "results/phantom_ct_seg/cgan/globallocal/generated.pt",
    "feature_extractor": "results/phantom_ct_seg/cgan/quality/extractor.pt",
    "train_cgan": "results/phantom_ct_seg/cgan/globallocal/global/model.pt",
}


def _gpu_rules() -> set[str]:
    rules = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            if re.search(r"^\s+gpu=1,", block, flags=re.M):
                rules.add(block.split(":", 1)[0].strip())
    return rules


def test_every_gpu_rule_is_checked():
    assert _gpu_rules() == set(TARGETS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_reaches_every_gpu_job(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    override = tmp_path / "cuda.yaml"
    override.write_text(CUDA_EVERYWHERE)
    ignored = []
    for rule, target in TARGETS.items():
        assert (workdir / target).exists(), target
        result = snakemake(workdir, target, "--force", "--rerun-triggers", "mtime", configfiles=(TINY, override),
                           cores=1)
        logs = "".join(p.read_text(errors="replace") for p in (workdir / "results" / "logs" / rule).rglob("*.log"))
        if result.returncode == 0 or "device 'cuda' was requested but no CUDA GPU is available" not in logs:
            ignored.append(rule)
    assert not ignored, f"these GPU jobs ignored device: cuda: {ignored}"
