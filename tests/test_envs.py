"""The conda environments in envs/: exact pins equal to the tested pin set, and one per rule that exists.

Conda is not available on CI, so the environments cannot be built there; these tests keep them from
drifting away from ``requirements/cpu.txt``, which CI does install and test.
"""

from __future__ import annotations

import re

import pytest
import yaml
from wfutil import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "cpu.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _rule_envs() -> dict[str, str]:
    """``{rule: env file name}`` from the ``conda:`` directive of every rule in workflow/rules."""
    found = {}
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            match = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/([\w.-]+)"', block)
            found[name] = match.group(1) if match else ""
    return found


def test_there_are_stage_environments():
    assert {p.name for p in ENVS} >= {"data.yaml", "gan.yaml", "report.yaml", "workflow.yaml"}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_environment_pins_every_package_to_the_tested_version(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["name"].startswith("lungsynth-") and "conda-forge" in spec["channels"]
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    python = [d for d in conda if d.startswith("python")]
    assert python == ["python=3.11.7"], python
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    pins = _pins()
    for requirement in pip:
        name, _, version = requirement.partition("==")
        key = re.sub(r"[-_.]+", "-", name).lower()
        assert version, f"{env.name}: {requirement} is not pinned with =="
        assert pins.get(key) == version, f"{env.name}: {requirement}, but requirements/cpu.txt has {pins.get(key)}"


def test_every_job_rule_names_an_existing_environment():
    envs = _rule_envs()
    local = {"all"}
    assert len(envs) > 20
    missing = {rule: env for rule, env in envs.items() if rule not in local and not (REPO / "envs" / env).is_file()}
    assert not missing, f"rules without an existing conda environment: {missing}"


def test_rules_that_build_torchvision_models_use_an_environment_with_torchvision():
    envs = _rule_envs()
    for rule in ("train_classifier", "score_dcgan", "classifier_cell", "quality_cgan"):
        spec = yaml.safe_load((REPO / "envs" / envs[rule]).read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        assert any(r.startswith("torchvision==") for r in pip), rule


def test_prepend_pythonpath_puts_the_checkout_first_once(monkeypatch):
    import os

    from lungsynth.runlog import prepend_pythonpath

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", "/checkout/src"]))
    prepend_pythonpath("/checkout/src")
    prepend_pythonpath("/checkout/src")
    assert os.environ["PYTHONPATH"] == os.pathsep.join(["/checkout/src", "/elsewhere"])
    monkeypatch.delenv("PYTHONPATH")
    prepend_pythonpath("/checkout/src")
    assert os.environ["PYTHONPATH"] == "/checkout/src"
