"""Reproducibility and safety of whole runs: determinism, resume after SIGKILL, no patient identifiers
in any artifact, safe checkpoint loading, and the workflow's lint and format checks."""

from __future__ import annotations

import ast
import gzip
import io
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from wfutil import REPO, TINY, differing, generated_tensors, metrics_tables, snakemake, snakemake_command

# --- determinism ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_clean_runs_give_identical_tables_and_generated_tensors(tiny_run, tmp_path):
    """Every metrics table (CSV/JSON) and every generated tensor of two clean CPU runs is identical."""
    second = tmp_path / "second"
    second.mkdir()
    result = snakemake(second)
    assert result.returncode == 0, result.stderr[-4000:]
    first_tables, second_tables = metrics_tables(tiny_run / "results"), metrics_tables(second / "results")
    assert len(first_tables) > 40
    assert not differing(first_tables, second_tables)
    first_tensors, second_tensors = generated_tensors(tiny_run / "results"), generated_tensors(second / "results")
    assert len(first_tensors) >= 2 + 4 + 6  # DCGAN classes, LUS scores, conditional-GAN methods
    assert not differing(first_tensors, second_tensors)


# --- resume after SIGKILL -------------------------------------------------------------------------

LONG_DCGAN = "dcgan:\n  train:\n    epochs: 150\n    checkpoint_every: 10\n"
GENERATOR = "results/phantom_ct/dcgan/covid/generator.pt"


def _training_process(workdir: Path, script: str, timeout_s: float = 300) -> psutil.Process:
    """The Python process running ``script`` for the Snakemake run in ``workdir``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if script in cmdline and str(workdir) in (proc.info["cwd"] or "") + cmdline:
                return proc
        time.sleep(0.05)
    raise AssertionError(f"no {script} process appeared within {timeout_s} s")


def _killed_run(tmp_path: Path, override: str, target: str, script: str, checkpoints: str):
    """Tiny config plus ``override``, run in ``tmp_path/killed`` for ``target`` with ``script`` killed after
    its first checkpoint in ``checkpoints`` (relative to the work folder); ``(work folder, configs, run)``."""
    configs = (TINY, tmp_path / "long.yaml")
    configs[1].write_text(override)
    killed = tmp_path / "killed"
    killed.mkdir()
    return killed, configs, _kill_after_first_checkpoint(killed, target, configs, script, killed / checkpoints)


def _kill_after_first_checkpoint(workdir: Path, target: str, configs, script: str,
                                 checkpoints: Path) -> tuple[int, str, list[int]]:
    """Run the workflow for ``target``, SIGKILL ``script`` once a checkpoint exists in ``checkpoints``.

    Returns the run's exit status, its output and the checkpointed steps left on disk.
    """
    command, env = snakemake_command(workdir, target, configfiles=configs, cores=1)
    run = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        trainer = _training_process(workdir, script)
        deadline = time.monotonic() + 300
        while not list(checkpoints.glob("ckpt_*.pt")) and time.monotonic() < deadline and trainer.is_running():
            time.sleep(0.02)
        trainer.kill()  # SIGKILL: no handler runs, as when SLURM or the OOM killer ends a job
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    return run.returncode, output, sorted(int(p.stem.split("_")[1]) for p in checkpoints.glob("ckpt_*.pt"))


def _resumed_step(workdir: Path, target: str, configs, log: str, unit: str) -> tuple[int, int]:
    """Rerun the workflow for ``target``; the ``(step, total)`` its job log says it resumed from."""
    rerun = snakemake(workdir, target, configfiles=configs, cores=1)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    text = (workdir / "results" / "logs" / log).read_text()
    match = re.search(rf"resuming from checkpoint at {unit} (\d+) of (\d+)", text)
    assert match, text[-3000:]
    return int(match.group(1)), int(match.group(2))


def _uninterrupted(tmp_path: Path, target: str, configs) -> Path:
    """A clean run of ``target`` in its own folder."""
    straight = tmp_path / "straight"
    straight.mkdir()
    uninterrupted = snakemake(straight, target, configfiles=configs, cores=1)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-4000:]
    return straight


@pytest.mark.slow
def test_training_job_killed_with_sigkill_resumes_and_matches_an_uninterrupted_run(tmp_path):
    killed, configs, (returncode, output, saved) = _killed_run(
        tmp_path, LONG_DCGAN, GENERATOR, "train_dcgan.py", "results/phantom_ct/dcgan/covid/work/checkpoints")
    assert returncode != 0, "the killed training job should fail its first run"
    assert not (killed / GENERATOR).exists(), "a killed job must leave no output under its final name"
    assert saved, f"no checkpoint was committed before the kill:\n{output[-3000:]}"

    resumed, total = _resumed_step(killed, GENERATOR, configs, "train_dcgan/phantom_ct_covid.log", "step")
    assert resumed >= saved[-1] and 0 < resumed < total

    straight = _uninterrupted(tmp_path, GENERATOR, configs)
    a = torch.load(killed / GENERATOR, weights_only=True)
    b = torch.load(straight / GENERATOR, weights_only=True)
    assert a["step"] == b["step"] == total
    assert a["generator"].keys() == b["generator"].keys()
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    losses = "results/phantom_ct/dcgan/covid/losses.csv"
    pd.testing.assert_frame_equal(pd.read_csv(killed / losses), pd.read_csv(straight / losses))


LONG_EXTRACTOR = "cgan:\n  quality:\n    extractor_epochs: 200\n    extractor_width: 8\n"
EXTRACTOR = "results/phantom_ct_seg/cgan/quality/extractor.pt"
EXTRACTOR_HISTORY = "results/phantom_ct_seg/cgan/quality/extractor_history.csv"


@pytest.mark.slow
def test_feature_extractor_job_killed_with_sigkill_resumes_and_matches_an_uninterrupted_run(tmp_path):
    """The epoch-level trainers (feature extractor, classifier) checkpoint through the same loop as the GANs."""
    killed, configs, (returncode, output, saved) = _killed_run(
        tmp_path, LONG_EXTRACTOR, EXTRACTOR, "feature_extractor.py",
        "results/phantom_ct_seg/cgan/quality/extractor_work/checkpoints")
    assert returncode != 0, "the killed training job should fail its first run"
    assert not (killed / EXTRACTOR).exists()
    assert saved, f"no checkpoint was committed before the kill:\n{output[-3000:]}"

    resumed, total = _resumed_step(killed, EXTRACTOR, configs, "feature_extractor/phantom_ct_seg.log", "epoch")
    assert resumed >= saved[-1] and 0 < resumed < total == 200

    straight = _uninterrupted(tmp_path, EXTRACTOR, configs)
    a = torch.load(killed / EXTRACTOR, weights_only=True)
    b = torch.load(straight / EXTRACTOR, weights_only=True)
    assert a["config"] == b["config"] and a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    pd.testing.assert_frame_equal(pd.read_csv(killed / EXTRACTOR_HISTORY), pd.read_csv(straight / EXTRACTOR_HISTORY))


# --- no patient identifiers in any artifact -------------------------------------------------------


def _dicom_source(root: Path, patient_id: str, patient_name: str) -> Path:
    """The CT phantom's DICOM series with identifying headers, as a scanner export would have them.

    Each patient gets ``<patient_id>-<k>`` and ``<patient_name><k>``; folders are neutral.
    """
    import pydicom

    from lungsynth.phantom.ct import write_phantom_ct

    write_phantom_ct(root / "phantom", n_patients=8, slices_per_patient=4, size=64, seed=3)
    dicom = root / "phantom" / "dicom"
    for k, folder in enumerate(sorted(p for p in dicom.glob("*/*") if p.is_dir())):
        for path in folder.glob("*.dcm"):
            ds = pydicom.dcmread(path)
            ds.PatientID = f"{patient_id}-{k}"
            ds.PatientName = f"{patient_name}{k}"
            ds.OtherPatientIDs = f"{patient_id}-OTHER-{k}"
            ds.save_as(path)
    return dicom


def _readable_texts(path: Path) -> list[bytes]:
    """The bytes of ``path`` and, for zip (``.pt``, ``.npz``) and gzip files, of their decompressed members."""
    raw = path.read_bytes()
    texts = [raw]
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            texts += [archive.read(name) + name.encode() for name in archive.namelist()]
    elif raw[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(raw))
    return texts


@pytest.mark.slow
def test_no_artifact_of_a_dicom_run_contains_patient_name_or_id(tmp_path, dicom_identity):
    patient_id, patient_name = dicom_identity
    source = _dicom_source(tmp_path / "export", patient_id, patient_name)
    config = tmp_path / "dicom.yaml"
    config.write_text(
        f"datasets:\n  scanner:\n    format: dicom\n    path: {source}\n"
        "    classes: {covid: covid, noncovid: noncovid}\n"
        "    split: {fractions: {train: 0.5, val: 0.25, test: 0.25}}\n"
        "dcgan:\n  dataset: scanner\nlusgan:\n  enabled: false\ncgan:\n  enabled: false\n"
        "ablation:\n  segmentation:\n    enabled: false\n"
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, configfiles=(TINY, config))
    assert result.returncode == 0, result.stderr[-4000:]
    assert (workdir / "results" / "report" / "index.html").exists()
    assert (workdir / "results" / "scanner" / "classifier" / "metrics.json").exists()

    # every patient's ID and name as written, the name with spaces, and name parts of 5+ characters
    # (shorter ones, like a 3-letter surname, occur by chance in megabytes of weights and base64)
    secrets = {patient_id}
    for k in range(8):
        name = f"{patient_name}{k}"
        secrets |= {f"{patient_id}-{k}", f"{patient_id}-OTHER-{k}", name, name.replace("^", " ")}
        secrets |= {part for part in name.split("^") if len(part) >= 5}
    # every file the run wrote: results, logs, benchmarks, Snakemake's metadata and its own log
    artifacts = [p for p in workdir.rglob("*") if p.is_file()]
    assert len(artifacts) > 50
    leaks = []
    for path in artifacts:
        for text in _readable_texts(path):
            leaks += [f"{path.relative_to(workdir)}: {s!r}" for s in secrets if s.encode() in text]
            leaks += [f"{path.relative_to(workdir)}: {s!r} (UTF-16)" for s in secrets if s.encode("utf-16-le") in text]
    assert not leaks, "\n".join(leaks)
    # and the headers really carried them (the scan would find them if they leaked)
    sample = next(source.rglob("*.dcm"))
    assert any(s.encode() in sample.read_bytes() for s in secrets)


# --- safe checkpoint loading ----------------------------------------------------------------------


def _torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            if name == "load" and owner == "torch":
                yield node


def test_every_torch_load_in_the_code_uses_weights_only():
    """No ``torch.load`` in the package, scripts or benchmarks may unpickle arbitrary objects."""
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "workflow" / "scripts").glob("*.py"),
             *(REPO / "benchmarks").glob("*.py")]
    unsafe = []
    calls = 0
    for path in files:
        for call in _torch_load_calls(ast.parse(path.read_text(), filename=str(path))):
            calls += 1
            keywords = {k.arg: k.value for k in call.keywords}
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                unsafe.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert calls >= 3
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


class _Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_loader_refuses_pickled_code(tmp_path):
    from lungsynth.artifacts import torch_load
    from lungsynth.engine import CheckpointStore

    bad = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": _Payload()}, bad)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        torch_load(bad)
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(bad, tmp_path / "checkpoints" / "ckpt_000000001.pt")
    assert CheckpointStore(tmp_path / "checkpoints").latest() is None  # skipped with a warning, never unpickled


# --- lint and format checks -----------------------------------------------------------------------


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def test_snakemake_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_snakefmt_check_is_clean():
    result = subprocess.run([_tool("snakefmt"), "--check", "Snakefile", "workflow"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
