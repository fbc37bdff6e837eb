"""Config schema: defaults, descriptions, and errors that name the key."""

import pytest
import yaml

from lungsynth.config import load_config, load_schema, train_settings, validate_config
from lungsynth.errors import ConfigError
from wfutil import REPO


def _walk(schema, path="", defs=None):
    defs = defs or schema.get("$defs", {})
    if schema.get("x-overrides"):
        return  # override objects have no defaults by design (they inherit)
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}".lstrip("."), sub
        if sub.get("type") == "object" or "properties" in sub:
            yield from _walk(sub, f"{path}.{name}", defs)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        if "$ref" in extra:
            extra = defs[extra["$ref"].split("/")[-1]]
        yield from _walk(extra, f"{path}.*", defs)


def test_every_key_has_description_and_default():
    schema = load_schema()
    for key, sub in _walk(schema):
        if "$ref" in sub:
            sub = schema["$defs"][sub["$ref"].split("/")[-1]]
        assert sub.get("description"), f"{key} has no description"
        if key.endswith("format") and key.startswith("datasets"):
            continue
        assert "default" in sub, f"{key} has no default"


SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "config").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_are_valid(path):
    config = load_config(REPO / path)
    assert config["dcgan"]["enabled"] or config["lusgan"]["enabled"] or config["cgan"]["enabled"]


def test_there_is_a_paper_config_for_each_seed():
    """Seed 000 (DCGAN + DenseNet-169), seed 001 (conditional GANs + U-Net study), seed 003 (LUS GANs)."""
    paper = {p: load_config(REPO / p) for p in SHIPPED if p.startswith("config/paper/")}
    assert any(c["dcgan"]["enabled"] and c["ablation"]["classifier"]["enabled"] for c in paper.values())
    assert any(c["cgan"]["enabled"] and c["ablation"]["segmentation"]["enabled"] for c in paper.values())
    assert any(c["lusgan"]["enabled"] for c in paper.values())


def test_defaults_are_filled():
    config = validate_config({})
    assert config["preprocess"]["window"] == [-600, 1500]
    assert config["datasets"]["phantom_ct"]["split"]["fractions"]["test"] == 0.2
    assert config["dcgan"]["train"]["beta1"] == 0.5


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"dcgan": {"trian": {}}}, "dcgan.trian"),
        ({"dcgan": {"train": {"lr": "fast"}}}, "dcgan.train.lr"),
        ({"dcgan": {"train": {"epochs": 0}}}, "dcgan.train.epochs"),
        ({"datasets": {"x": {"format": "zip"}}, "dcgan": {"dataset": "x"}}, "datasets.x.format"),
        ({"preprocess": {"size": 60}}, "preprocess.size"),
        ({"dcgan": {"dataset": "missing"}}, "dcgan.dataset"),
        ({"dcgan": {"per_class": {"lungs": {"epochs": 3}}}}, "dcgan.per_class.lungs"),
        ({"datasets": {"phantom_ct": {"format": "phantom_ct", "split": {"fractions": {"train": 0.9, "val": 0.2, "test": 0.2}}}}},
         "datasets.phantom_ct.split.fractions"),
        ({"score": {"set_size": 100}}, "dcgan.generate.n_images"),
        ({"unknown_top": 1}, "unknown_top"),
        ({"lusgan": {"enabled": True}}, "lusgan.dataset"),
        ({"datasets": {"u": {"format": "phantom_lus"}}, "lusgan": {"enabled": True, "dataset": "u", "classes": ["5"]}},
         "lusgan.classes"),
        ({"datasets": {"u": {"format": "phantom_lus", "preprocess": {"size": 96}}}, "lusgan": {"enabled": True, "dataset": "u"}},
         "datasets.u.preprocess.size"),
        # per-dataset and per-class overrides are held to their top-level twin's rules, named by full path
        ({"preprocess": {"window": [0, 0]}}, "preprocess.window"),
        ({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"window": [200, -1000]}}}},
         "datasets.phantom_ct.preprocess.window"),
        ({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"window": [0, 0]}}}},
         "datasets.phantom_ct.preprocess.window"),
        ({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"window": [-1000, float("nan")]}}}},
         "datasets.phantom_ct.preprocess.window.1"),
        ({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"size": 8}}}},
         "datasets.phantom_ct.preprocess.size"),
        ({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"channels": 2}}}},
         "datasets.phantom_ct.preprocess.channels"),
        ({"dcgan": {"train": {"crop_scale": [0.9, 0.5]}}}, "dcgan.train.crop_scale"),
        ({"dcgan": {"per_class": {"covid": {"crop_scale": [0.9, 0.5]}}}}, "dcgan.per_class.covid.crop_scale"),
        ({"dcgan": {"per_class": {"covid": {"lr": -1.0}}}}, "dcgan.per_class.covid.lr"),
        ({"dcgan": {"per_class": {"covid": {"lr": float("inf")}}}}, "dcgan.per_class.covid.lr"),
        ({"datasets": {"u": {"format": "phantom_lus"}}, "lusgan": {"enabled": True, "dataset": "u", "model": {"pack": 4},
                                                                     "per_class": {"1": {"batch_size": 2}}}},
         "lusgan.per_class.1.batch_size"),
        ({"datasets": {"x": {"format": "image_folder", "path": "x", "split_lists": {"train": []}}}},
         "datasets.x.split_lists.train"),
        ({"datasets": {"x": {"format": "image_folder", "path": "x", "split_lists": {"tr": "a.txt"}}}},
         "datasets.x.split_lists"),
    ],
)
def test_bad_config_names_the_key(config, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config)


def test_per_class_overrides_only_that_class():
    config = validate_config({"dcgan": {"per_class": {"covid": {"epochs": 7}}}})
    assert train_settings(config, "covid")["epochs"] == 7
    assert train_settings(config, "noncovid")["epochs"] == config["dcgan"]["train"]["epochs"]


def test_paper_config_matches_seed_000():
    with open("config/paper/dcgan_covidct.yaml") as handle:
        raw = yaml.safe_load(handle)
    config = validate_config(raw)
    assert config["preprocess"]["size"] == 224 and config["preprocess"]["channels"] == 3
    train = config["dcgan"]["train"]
    assert (train["batch_size"], train["lr"], train["beta1"], train["epochs"]) == (16, 2e-4, 0.5, 3000)
    assert config["score"]["n_sets"] == 10 and config["score"]["set_size"] == 100


def test_per_class_override_keeps_the_users_other_settings():
    """An override must not reset unset keys to schema defaults (they inherit from `train`)."""
    config = validate_config({"dcgan": {"train": {"lr": 0.001}, "per_class": {"covid": {"epochs": 7}}}})
    assert config["dcgan"]["per_class"]["covid"] == {"epochs": 7}
    assert train_settings(config, "covid")["lr"] == 0.001
    assert train_settings(config, "covid")["epochs"] == 7


def test_dataset_preprocess_override_inherits_the_rest():
    from lungsynth.config import preprocess_settings

    config = validate_config({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"size": 32}}},
                              "preprocess": {"channels": 3}})
    settings = preprocess_settings(config, "phantom_ct")
    assert settings["size"] == 32 and settings["channels"] == 3 and settings["window"] == [-600, 1500]


@pytest.mark.parametrize("path", [p for p in SHIPPED if p != "config/config.yaml"])
def test_shipped_configs_are_valid_merged_over_the_default_as_snakemake_runs_them(path):
    """``snakemake --configfile X`` deep-merges X over config/config.yaml; the merged config must validate."""
    from snakemake.utils import update_config

    merged = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(merged, yaml.safe_load((REPO / path).read_text()))
    validate_config(merged)


def test_a_window_override_that_inherits_a_valid_top_level_window_passes():
    config = validate_config({"datasets": {"phantom_ct": {"format": "phantom_ct", "preprocess": {"size": 64}}},
                              "preprocess": {"window": [-1000, 400]}})
    assert config["datasets"]["phantom_ct"]["preprocess"] == {"size": 64}


def test_split_lists_take_one_file_or_a_list_as_the_code_does():
    """The schema admits what lungsynth.data.splits reads: one list file per split, or several."""
    for lists in ({"train": "a.txt"}, {"train": ["a.txt", "b.txt"], "test": "c.txt"}):
        config = validate_config({"datasets": {"x": {"format": "image_folder", "path": "x", "split_lists": lists}},
                                  "dcgan": {"enabled": False}, "ablation": {"classifier": {"enabled": False}}})
        assert config["datasets"]["x"]["split_lists"] == lists


def test_an_installed_package_validates_a_config_without_the_checkout(tmp_path):
    """The schema is package data: a copy of the package alone (as pip installs it) validates a config."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import lungsynth

    shutil.copytree(Path(lungsynth.__file__).parent, tmp_path / "site" / "lungsynth",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import lungsynth.config as c; cfg = c.validate_config({}); "
            "assert cfg['dcgan']['train']['lr'] == 2e-4, cfg['dcgan']['train']; print(c.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "site") in done.stdout
