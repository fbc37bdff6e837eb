"""Helpers for the end-to-end tests: run Snakemake on a work folder, read its job table, compare artifacts."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def snakemake_command(workdir: Path, *args: str, configfiles: Iterable[Path] = (TINY,), cores: int = 2,
                      env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run the workflow with ``--directory workdir``."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", str(cores), *args, "--configfile", *map(str, configfiles)]
    return command, dict(os.environ, PYTHONPATH=str(REPO / "src"), **(env or {}))


def snakemake(workdir: Path, *args: str, configfiles: Iterable[Path] = (TINY,), cores: int = 2,
              timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the workflow with ``--directory workdir``; ``args`` go before ``--configfile``."""
    command, run_env = snakemake_command(workdir, *args, configfiles=configfiles, cores=cores, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=run_env, cwd=workdir, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into ``{rule: count}`` (without 'total'); empty if none."""
    if "Job stats:" not in output:
        return {}
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def metrics_tables(results: Path) -> dict[str, str]:
    """Every CSV/JSON table under ``results`` except logs, benchmarks and training work folders.

    Returns ``{relative path: text}``; these are the numbers a run reports.
    """
    tables = {}
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results)
        if path.suffix not in (".csv", ".json") or rel.parts[0] in ("logs", "benchmarks") or "work" in rel.parts:
            continue
        tables[str(rel)] = path.read_text()
    return tables


def generated_tensors(results: Path) -> dict[str, str]:
    """SHA-256 of the tensors of every ``generated.pt`` under ``results`` (not of the zip container)."""
    import torch

    digests = {}
    for path in sorted(results.rglob("generated.pt")):
        data = torch.load(path, map_location="cpu", weights_only=True)
        h = hashlib.sha256()
        for key in sorted(data):
            value = data[key]
            if isinstance(value, torch.Tensor):
                h.update(key.encode())
                h.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
                h.update(value.contiguous().numpy().tobytes())
        digests[str(path.relative_to(results))] = h.hexdigest()
    return digests


def differing(first: dict[str, str], second: dict[str, str]) -> list[str]:
    """Keys whose values differ, or that only one side has."""
    return sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
