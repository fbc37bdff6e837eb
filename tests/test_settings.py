"""The schema is the one source of defaults: every settings object agrees with it and drops no key."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lungsynth.tasks.classifier import train_classifier
from lungsynth.config import load_schema, validate_config
from lungsynth.data.preprocess import preprocess_dataset
from lungsynth.data.readers import scan_dicom, scan_image_folder, scan_lus_mat, scan_lus_videos, scan_nifti
from lungsynth.data.segmentation import preprocess_segmentation
from lungsynth.errors import ConfigError
from lungsynth.tasks.feature_extractor import train_feature_extractor
from lungsynth.tasks.segmentation import UNetSettings
from lungsynth.methods.dcgan.train import DCGANSettings
from lungsynth.methods.cgan.train import CGANSettings
from lungsynth.methods.lusgan.train import LUSSettings

# settings class -> (schema section, fields that come from elsewhere than that section)
SETTINGS = {
    DCGANSettings: ("dcgan.train", set()),
    LUSSettings: ("lusgan.train", set()),
    CGANSettings: ("cgan.train", set()),
    UNetSettings: ("ablation.segmentation.train", {"seed"}),  # the seed is the study cell's
}


def _section(path: str) -> dict:
    """The properties of a schema section; ``*`` steps into a mapping's entries (``datasets.*``)."""
    schema = node = load_schema()
    for part in path.split("."):
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node["properties"]


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_settings_fields_are_the_schema_keys_with_the_schema_defaults(cls):
    path, elsewhere = SETTINGS[cls]
    schema = _section(path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) - elsewhere == set(schema), f"{cls.__name__} fields differ from the keys of {path}"
    for name, spec in schema.items():
        assert _plain(fields[name].default) == spec["default"], f"{cls.__name__}.{name} default != {path}.{name}"


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_a_validated_config_section_builds_its_settings_and_an_unknown_key_is_an_error(cls):
    path, elsewhere = SETTINGS[cls]
    config = validate_config({})
    section = config
    for part in path.split("."):
        section = section[part]
    values = dict(section, **{name: 0 for name in elsewhere})
    built = cls.from_dict(values)
    assert all(_plain(getattr(built, k)) == _plain(v) for k, v in values.items())
    with pytest.raises(ConfigError, match=rf"{cls.__name__}: unknown setting\(s\) learning_rate"):
        cls.from_dict({**values, "learning_rate": 1.0})


@pytest.mark.parametrize(("function", "path", "names"), [
    (train_classifier, "classifier", {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "seed": "seed",
                                      "crop_scale": "crop_scale", "weights": "weights", "device": "device",
                                      "amp": "amp"}),
    (train_feature_extractor, "cgan.quality", {"width": "extractor_width", "epochs": "extractor_epochs",
                                               "seed": "seed", "device": "device"}),
    (preprocess_dataset, "preprocess", {"window": "window", "normalise_8bit": "normalise_8bit", "channels": "channels",
                                        "size": "size", "crop_sector": "crop_sector"}),
    (preprocess_segmentation, "preprocess", {"window": "window", "normalise_8bit": "normalise_8bit", "size": "size"}),
    (preprocess_segmentation, "cgan", {"lung_mask": "lung_mask", "require_infection": "require_infection"}),
    *[(reader, "datasets.*", {key: key for key in keys}) for reader, keys in [
        (scan_image_folder, ("patient_regex", "on_bad_file", "follow_links_outside")),
        (scan_dicom, ("on_bad_file", "follow_links_outside")),
        (scan_nifti, ("labels_csv", "default_class", "mask_labels", "on_bad_file", "follow_links_outside")),
        (scan_lus_mat, ("scores_csv", "variable", "mat_layout", "frame_stride", "max_frames", "scores", "split_by",
                        "patient_regex", "on_bad_file", "follow_links_outside")),
        (scan_lus_videos, ("path_column", "score_column", "frame_stride", "max_frames", "scores", "split_by",
                           "patient_regex", "on_bad_file", "follow_links_outside")),
    ]],
], ids=["classifier", "feature_extractor", "preprocess", "preprocess_segmentation", "segmentation_data",
        "image_folder", "dicom", "nifti", "lus_mat", "lus_video"])
def test_trainer_keyword_defaults_equal_the_schema(function, path, names):
    schema = _section(path)
    parameters = inspect.signature(function).parameters
    for argument, key in names.items():
        assert _plain(parameters[argument].default) == schema[key]["default"], f"{function.__name__}({argument})"
