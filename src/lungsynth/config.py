"""Config loading and validation against the schema shipped with the package (``lungsynth/schemas/config.schema.yaml``).

The schema is the single source of defaults: every settings object takes its values from the
validated config (:class:`SettingsFromDict`), and the workflow validates with the same file.

:func:`validate_config` fills every default the schema declares, then checks
types, ranges and unknown keys, then the cross-key rules no schema can state.
Any problem raises :class:`~lungsynth.errors.ConfigError` whose message names
the key (dotted path, e.g. ``dcgan.train.lr``).
"""

from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from lungsynth.errors import ConfigError

SCHEMA_RESOURCE = ("lungsynth", "schemas/config.schema.yaml")


def load_schema(path: str | Path | None = None) -> dict:
    """Read the YAML JSON-schema: the package's own (package data) unless ``path`` names another file."""
    if path is None:
        package, name = SCHEMA_RESOURCE
        return yaml.safe_load(resources.files(package).joinpath(name).read_text(encoding="utf-8"))
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.cache
def dataset_defaults() -> dict[str, Any]:
    """Schema defaults of a ``datasets.<name>`` entry (key -> default; keys without one are left out)."""
    schema = load_schema()
    entry = schema["properties"]["datasets"]["additionalProperties"]
    if "$ref" in entry:
        entry = _resolve_ref(schema, entry["$ref"])
    return {key: copy.deepcopy(sub["default"]) for key, sub in entry["properties"].items() if "default" in sub}


def _defaulting_validator(schema: dict):
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, subschema):
        # objects marked x-overrides hold only what the user set: they are merged over
        # the settings they override, so filling defaults there would mask the user's values
        if isinstance(instance, dict) and not subschema.get("x-overrides"):
            for name, sub in properties.items():
                if name not in instance:
                    # resolve a $ref so referenced objects get their default too
                    if "$ref" in sub:
                        sub = _resolve_ref(schema, sub["$ref"])
                    if isinstance(sub, dict) and "default" in sub:
                        instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, subschema)

    validator_cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return validator_cls(schema)


def _resolve_ref(schema: dict, ref: str) -> dict:
    resolved = schema
    for part in ref.lstrip("#/").split("/"):
        resolved = resolved[part]
    return resolved


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _format_error(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        names = ", ".join(f"{key}.{u}" if error.absolute_path else u for u in unknown)
        hint = f"; known keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown config key {names}{hint}"
    if error.validator == "required":
        return f"config key {key}: {error.message}"
    description = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    message = f"config key {key}: {error.message}"
    if description:
        message += f" ({description})"
    return message


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Return a validated copy of ``config`` with all defaults filled in.

    Raises
    ------
    ConfigError
        naming the first offending key and what is wrong with it.
    """
    schema = load_schema() if schema is None else schema
    config = copy.deepcopy(config) if config else {}
    validator = _defaulting_validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), _key(e.absolute_path)))
    if errors:
        raise ConfigError(_format_error(errors[0]))
    # Filling defaults inside objects that were themselves defaulted needs a second pass.
    for _ in range(3):
        again = sorted(validator.iter_errors(config), key=lambda e: len(e.absolute_path))
        if again:
            raise ConfigError(_format_error(again[0]))
    _check_cross_keys(config)
    return config


def _check_cross_keys(config: dict) -> None:
    datasets = config["datasets"]
    for name, spec in datasets.items():
        fractions = spec["split"]["fractions"]
        total = sum(fractions.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(f"config key datasets.{name}.split.fractions: shares sum to {total:g}, must sum to 1")
        if not spec["format"].startswith("phantom") and not spec.get("path"):
            raise ConfigError(f"config key datasets.{name}.path: required for format {spec['format']}")
        if spec["format"] in ("nifti", "paired_folder") and not (spec.get("labels_csv") or spec.get("default_class")):
            raise ConfigError(
                f"config key datasets.{name}.default_class: format {spec['format']} needs labels_csv or default_class"
            )
        if 0 not in spec["mask_labels"]:
            raise ConfigError(f"config key datasets.{name}.mask_labels: must contain 0 (background)")
    _check_finite(config, ())
    _check_preprocess(config["preprocess"], "preprocess")
    for name, spec in datasets.items():
        # a per-dataset override obeys the same rules as its top-level twin, and the message names it
        _check_preprocess(preprocess_settings(config, name), "preprocess", spec.get("preprocess", {}),
                          f"datasets.{name}.preprocess")
    for branch in ("dcgan", "lusgan"):
        _check_train(config, branch, config[branch]["train"], f"{branch}.train")
        for label, override in config[branch]["per_class"].items():
            _check_train(config, branch, train_settings(config, label, branch), f"{branch}.train", override,
                         f"{branch}.per_class.{label}")
    _check_train(config, "cgan", config["cgan"]["train"], "cgan.train")
    _check_lusgan(config)
    _check_cgan(config)
    _check_ablation(config)

    dcgan = config["dcgan"]
    spec = _branch_dataset(config, "dcgan")
    if spec is not None:
        known = _dataset_classes(spec)
        if known is not None:
            for label in dcgan["classes"]:
                if label not in known:
                    raise ConfigError(f"config key dcgan.classes: '{label}' is not a class of dataset {dcgan['dataset']} ({', '.join(known)})")
        for label in dcgan["per_class"]:
            if label not in dcgan["classes"]:
                raise ConfigError(f"config key dcgan.per_class.{label}: '{label}' is not in dcgan.classes")
        model = dcgan["model"]
        if len(model["generator_widths"]) != len(model["discriminator_widths"]):
            raise ConfigError("config key dcgan.model.discriminator_widths: needs as many entries as generator_widths")
        size = preprocess_settings(config, dcgan["dataset"])["size"]
        factor = 2 ** len(model["generator_widths"])
        if size % factor:
            raise ConfigError(
                f"config key dcgan.model.generator_widths: {len(model['generator_widths'])} upsamplings need "
                f"preprocess.size divisible by {factor}, got {size}"
            )
        needed = config["score"]["n_sets"] * config["score"]["set_size"]
        if dcgan["generate"]["n_images"] < needed:
            raise ConfigError(
                f"config key dcgan.generate.n_images: {dcgan['generate']['n_images']} is fewer than "
                f"score.n_sets x score.set_size = {needed}"
            )
        classifier_dataset = config["classifier"]["dataset"] or dcgan["dataset"]
        if classifier_dataset not in datasets:
            raise ConfigError(f"config key classifier.dataset: '{classifier_dataset}' is not declared in datasets")
        positive = config["classifier"]["positive_class"]
        if positive not in dcgan["classes"]:
            raise ConfigError(f"config key classifier.positive_class: '{positive}' is not in dcgan.classes")


def _check_finite(value: Any, path: tuple) -> None:
    """Every number in the config is finite (YAML's .nan and .inf pass the schema's range checks)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            _check_finite(sub, (*path, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            _check_finite(sub, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {_key(path)}: {value} is not a finite number")


def _origin(key: str, base: str, override: dict, override_path: str | None) -> str:
    """Full path of the key a merged setting came from: the override's where it sets the key, else the base's."""
    return f"{override_path}.{key}" if override_path is not None and key in override else f"{base}.{key}"


def _check_preprocess(settings: dict, base: str, override: dict | None = None, override_path: str | None = None) -> None:
    """Rules on (merged) preprocess settings that the schema cannot state."""
    override = override or {}
    if override_path is not None and not override:
        return  # nothing overridden: the top-level settings were checked already
    low, high = settings["window"]
    if not low < high:
        key = _origin("window", base, override, override_path)
        raise ConfigError(f"config key {key}: low {low} must be below high {high} (a reversed window inverts "
                          "every pixel, an empty one divides by zero)")


def _check_train(config: dict, branch: str, settings: dict, base: str, override: dict | None = None,
                 override_path: str | None = None) -> None:
    """Rules on (merged) training settings of ``branch`` that the schema cannot state."""
    override = override or {}
    if "crop_scale" in settings:
        low, high = settings["crop_scale"]
        if not low <= high:
            raise ConfigError(f"config key {_origin('crop_scale', base, override, override_path)}: min {low} must "
                              f"not exceed max {high}")
    if settings.get("ada_target", 0) > 0 and not settings.get("diffaugment", "").strip():
        raise ConfigError(f"config key {_origin('ada_target', base, override, override_path)}: the adaptive "
                          "probability steers diffaugment, which is off: set a policy such as "
                          "diffaugment: translation,cutout,color, or ada_target: 0")
    if branch == "lusgan":
        pack = config["lusgan"]["model"]["pack"]
        if settings["batch_size"] < pack:
            raise ConfigError(f"config key {_origin('batch_size', base, override, override_path)}: "
                              f"{settings['batch_size']} is fewer than lusgan.model.pack = {pack} (batches are "
                              "trimmed to a multiple of pack)")


def _branch_dataset(config: dict, branch: str) -> dict | None:
    """The dataset spec an enabled branch trains on (``None`` when the branch is off); an undeclared one is an error."""
    section, datasets = config[branch], config["datasets"]
    if not section["enabled"]:
        return None
    if section["dataset"] not in datasets:
        raise ConfigError(f"config key {branch}.dataset: '{section['dataset']}' is not declared in datasets "
                          f"({', '.join(datasets)})")
    return datasets[section["dataset"]]


def _check_lusgan(config: dict) -> None:
    lus = config["lusgan"]
    spec = _branch_dataset(config, "lusgan")
    if spec is None:
        return
    if spec["format"] in ("phantom_lus", "lus_mat", "lus_video"):
        allowed = [str(s) for s in spec["scores"]] if spec["format"] != "phantom_lus" else ["0", "1", "2", "3"]
        for label in lus["classes"]:
            if label not in allowed:
                raise ConfigError(f"config key lusgan.classes: '{label}' is not an allowed score of dataset "
                                  f"{lus['dataset']} ({', '.join(allowed)})")
    for label in lus["per_class"]:
        if label not in lus["classes"]:
            raise ConfigError(f"config key lusgan.per_class.{label}: '{label}' is not in lusgan.classes")
    size = preprocess_settings(config, lus["dataset"])["size"]
    if size < 8 or size & (size - 1):
        raise ConfigError(f"config key datasets.{lus['dataset']}.preprocess.size: the ultrasound GANs need a power of "
                          f"two of at least 8 (4 x 2^k), got {size}")


def _check_cgan(config: dict) -> None:
    cgan = config["cgan"]
    spec = _branch_dataset(config, "cgan")
    if spec is None:
        return
    with_masks = spec["format"] in ("nifti", "paired_folder") or (
        spec["format"] == "phantom_ct" and spec["read_as"] == "nifti")
    if not with_masks:
        raise ConfigError(f"config key cgan.dataset: dataset {cgan['dataset']} (format {spec['format']}) has no infection "
                          "masks; use a nifti or paired_folder dataset, or a phantom_ct dataset with read_as: nifti")
    size = preprocess_settings(config, cgan["dataset"])["size"]
    n_local = 2 if "g3" in cgan["variants"] else 1
    factor = 2 ** (cgan["model"]["n_downsample_global"] + n_local)
    if size & (size - 1) or size % factor:
        raise ConfigError(f"config key datasets.{cgan['dataset']}.preprocess.size: the conditional GANs need a power of "
                          f"two divisible by {factor} (2^(n_downsample_global + local enhancers)), got {size}")
    if not cgan["methods"] and not cgan["variants"]:
        raise ConfigError("config key cgan.methods: name at least one method (or disable the branch)")


def _check_ablation(config: dict) -> None:
    seg, cls = config["ablation"]["segmentation"], config["ablation"]["classifier"]
    if seg["enabled"]:
        if not config["cgan"]["enabled"]:
            raise ConfigError("config key ablation.segmentation.enabled: the U-Net study needs cgan.enabled")
        if config["cgan"]["synthesis_test_split"] != "val":
            raise ConfigError("config key cgan.synthesis_test_split: the U-Net study tests on the test split, so the "
                              "synthesis-test split must be val")
        methods = list(config["cgan"]["methods"]) + list(config["cgan"]["variants"])
        if seg["method"] not in methods:
            raise ConfigError(f"config key ablation.segmentation.method: '{seg['method']}' is not in cgan.methods "
                              f"or cgan.variants ({', '.join(methods)})")
        size = preprocess_settings(config, config["cgan"]["dataset"])["size"]
        if size % 2 ** seg["model"]["depth"]:
            raise ConfigError(f"config key ablation.segmentation.model.depth: {seg['model']['depth']} levels need an "
                              f"image size divisible by {2 ** seg['model']['depth']}, got {size}")
    if cls["enabled"] and not config["dcgan"]["enabled"]:
        raise ConfigError("config key ablation.classifier.enabled: the classifier study needs dcgan.enabled")


def _dataset_classes(spec: dict) -> list[str] | None:
    """Class names a dataset declares, or None where only the data can tell (labels_csv)."""
    if spec["format"] == "phantom_ct":
        return ["covid", "noncovid"]
    if spec["format"] in ("phantom_lus", "lus_mat", "lus_video"):
        return None
    if spec["format"] in ("image_folder", "dicom"):
        return list(spec["classes"])
    if spec.get("labels_csv"):
        return None
    return [spec["default_class"]]


def train_settings(config: dict, label: str, branch: str = "dcgan") -> dict:
    """Training settings of one class: ``<branch>.train`` updated by ``<branch>.per_class[label]``."""
    settings = dict(config[branch]["train"])
    settings.update(config[branch]["per_class"].get(label, {}))
    return settings


def preprocess_settings(config: dict, dataset: str) -> dict:
    """Preprocessing of one dataset: top-level ``preprocess`` updated by ``datasets.<name>.preprocess``."""
    settings = dict(config["preprocess"])
    settings.update(config["datasets"][dataset].get("preprocess", {}))
    return settings


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    return validate_config(raw)


class SettingsFromDict:
    """Mixin for settings dataclasses built from a validated config section.

    ``from_dict`` passes every key to the constructor: a key that is not a field is an error naming
    it, never dropped. The fields' defaults equal the schema's (``tests/test_settings.py`` ties them).
    """

    @classmethod
    def from_dict(cls, values: dict):
        from dataclasses import fields

        from lungsynth.errors import ConfigError

        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown setting(s) {', '.join(map(str, unknown))}; "
                              f"known: {', '.join(names)}")
        return cls(**values)
