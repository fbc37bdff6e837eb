"""The tiny workflow through ``profiles/slurm`` on a real one-node SLURM cluster.

When the tests run as root with ``apt-get`` (as CI does), this module installs SLURM from Debian's
packages (``slurmctld slurmd slurm-client munge``), writes a one-node configuration with fake GPUs,
starts the daemons, and runs the tiny config through the SLURM executor plugin: every job goes through
``sbatch``. Its metrics tables and generated tensors must equal those of the local run. Elsewhere the
module is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from wfutil import REPO, differing, generated_tensors, job_counts, metrics_tables, snakemake

pytestmark = pytest.mark.slow

STATE = Path("/var/tmp/lungsynth-slurm-test")
MARKER = "# written by lungsynth's tests/test_slurm.py"
PARTITION = "lungsynth_test"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")


def _run(*command: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _install() -> None:
    """Install SLURM and munge from the distribution's packages (refreshing the package lists if needed)."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-q", *PACKAGES]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if first.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=900)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if second.returncode != 0:
            raise RuntimeError(f"apt-get could not install {' '.join(PACKAGES)}:\n{second.stderr[-3000:]}")


def _write_config(cpus: int, memory_mb: int, gpus: int) -> None:
    """A one-node cluster in a container: no cgroups, no accounting database, ``gpus`` fake GPUs.

    ``cpus`` may exceed the machine's cores (``config_overrides``): more jobs then run side by side,
    which hides the executor's status-polling latency; each job still uses its rule's thread count.
    """
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    devices = []
    for i in range(gpus):
        device = STATE / f"fakegpu{i}"
        if not device.exists():
            os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, like /dev/null
        devices.append(str(device))
    slurm_conf = f"""{MARKER}
ClusterName=lungsynth-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
GresTypes=gpu
SlurmdParameters=config_overrides
StateSaveLocation={STATE}/state
SlurmdSpoolDir={STATE}/spool
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={STATE}/slurmctld.log
SlurmdLogFile={STATE}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{len(devices)} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    gres_conf = f"{MARKER}\nAutoDetect=off\n" + "".join(f"Name=gpu File={d}\n" for d in devices)
    etc = Path("/etc/slurm")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "slurm.conf").write_text(slurm_conf)
    (etc / "gres.conf").write_text(gres_conf)


def _running(name: str) -> list[psutil.Process]:
    """Live (not zombie) processes called ``name``."""
    found = []
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] == name and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _start(timeout_s: float = 90.0) -> None:
    """Start munged, slurmctld and slurmd (in that order) and wait until the node is idle."""
    if not _running("munged"):
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        _run("/usr/sbin/munged", "--force")
    for daemon in ("slurmctld", "slurmd"):
        _run(daemon)
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = _run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
        if state == "idle":
            return
        time.sleep(1)
    logs = "\n".join((STATE / f"{d}.log").read_text()[-2000:] for d in ("slurmctld", "slurmd")
                     if (STATE / f"{d}.log").exists())
    raise RuntimeError(f"the SLURM node did not become idle within {timeout_s:.0f} s (sinfo: {state!r}):\n{logs}")


def _stop(timeout_s: float = 30.0) -> None:
    """Stop slurmd and slurmctld and wait until they are gone."""
    for daemon in ("slurmd", "slurmctld"):
        for proc in _running(daemon):
            proc.terminate()
        _, alive = psutil.wait_procs(_running(daemon), timeout=timeout_s)
        for proc in alive:
            proc.kill()


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node SLURM cluster: installed, configured and started for this module."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("the SLURM test installs and starts SLURM, which needs root (CI runs as root)")
    if shutil.which("apt-get") is None:
        pytest.skip("the SLURM test installs SLURM with apt-get, which this machine lacks (CI has it)")
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and MARKER not in conf.read_text():
        pytest.skip("/etc/slurm/slurm.conf exists and was not written by this test; not touching a real cluster")
    _install()
    memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    cores = os.cpu_count() or 1
    slots, gpus = max(cores, 16), 8
    _write_config(slots, memory_mb, gpus)
    _stop()  # a slurmctld left from an earlier session would keep its old configuration
    _start()
    yield {"partition": PARTITION, "cores": cores, "slots": slots, "gpus": gpus, "memory_mb": memory_mb}
    _run("scancel", "--partition", PARTITION, check=False)
    _stop()


def site_profile(folder: Path, cluster: dict) -> Path:
    """``profiles/slurm`` with its placeholders filled in for the test cluster, as a user edits it.

    The partition and account placeholders get site values; CPU requests are capped to the machine's
    cores and memory requests so that sixteen jobs fit (the rules' thread counts are kept, so the
    results match a local run).
    """
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    profile["default-resources"].update(slurm_partition=cluster["partition"], slurm_account="lungsynth-ci")
    memory = cluster["memory_mb"] // 16
    profile["default-resources"]["mem_mb"] = min(profile["default-resources"]["mem_mb"], memory)
    for resources in profile["set-resources"].values():
        if "cpus_per_gpu" in resources:
            resources["cpus_per_gpu"] = min(resources["cpus_per_gpu"], cluster["cores"])
        resources["mem_mb"] = min(resources["mem_mb"], memory)
    # no accounting database on the test cluster: job states come from squeue, not sacct
    profile.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 1,
                    "retries": 0, "jobs": 24, "latency-wait": 5})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def test_tiny_workflow_through_slurm_equals_the_local_run(slurm_cluster, tiny_run, tmp_path):
    workdir = tmp_path / "slurm_run"
    workdir.mkdir()
    profile = site_profile(tmp_path / "profile", slurm_cluster)
    started = time.monotonic()
    result = snakemake(workdir, "--workflow-profile", str(profile), timeout=2400)
    wall = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    print(f"tiny workflow through SLURM: {wall:.0f} s wall")
    # the jobs really went through sbatch, GPU jobs with a GPU request
    assert "Job " in output and "has been submitted with SLURM jobid" in output
    submitted = {line.split("SLURM jobid")[1].split()[0] for line in output.splitlines() if "SLURM jobid" in line}
    counts = job_counts(output)
    local_rules = {"all", "report", "cgan_tables", "ablation_tables", "classifier_study"}
    assert len(submitted) == sum(n for rule, n in counts.items() if rule not in local_rules)
    # the same numbers and the same synthetic images as the local run
    local, cluster = tiny_run / "results", workdir / "results"
    assert metrics_tables(cluster), "the SLURM run wrote no tables"
    assert not differing(metrics_tables(local), metrics_tables(cluster))
    assert not differing(generated_tensors(local), generated_tensors(cluster))
