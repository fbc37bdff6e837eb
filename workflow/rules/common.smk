import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from lungsynth.config import preprocess_settings, train_settings, validate_config  # noqa: E402
from lungsynth.errors import ConfigError  # noqa: E402

try:
    config.update(validate_config(config))
except ConfigError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    label="[A-Za-z0-9_-]+",


RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


def dataset_spec(name):
    return config["datasets"][name]


def dataset_root(name):
    """Folder the ingest stage reads for dataset `name`."""
    spec = dataset_spec(name)
    if spec["format"] == "phantom_ct":
        return f"{RESULTS}/phantom/{name}/dicom"
    return spec["path"]


def ingest_input(wildcards):
    spec = dataset_spec(wildcards.dataset)
    if spec["format"] == "phantom_ct":
        return f"{RESULTS}/phantom/{wildcards.dataset}"
    if not Path(spec["path"]).exists():
        raise WorkflowError(
            f"config key datasets.{wildcards.dataset}.path: folder '{spec['path']}' does not exist "
            f"(relative paths are taken from {Path.cwd()})"
        )
    return spec["path"]


def ingest_spec(name):
    """The reader settings of a dataset (the phantom is read as class folders of DICOM series)."""
    spec = dict(dataset_spec(name))
    if spec["format"] == "phantom_ct":
        spec["format"] = "dicom"
        spec["classes"] = {"covid": "covid", "noncovid": "noncovid"}
    spec.pop("phantom", None)
    return spec


def preprocessed(dataset, split):
    return f"{RESULTS}/{dataset}/preprocessed/{split}.pt"


def dcgan_dataset():
    return config["dcgan"]["dataset"]


def classifier_dataset():
    return config["classifier"]["dataset"] or config["dcgan"]["dataset"]


def all_targets():
    targets = []
    if config["dcgan"]["enabled"]:
        targets.append(f"{RESULTS}/report/index.html")
    return targets


def report_inputs(wildcards):
    d, c = dcgan_dataset(), classifier_dataset()
    labels = config["dcgan"]["classes"]
    return {
        "manifest": f"{RESULTS}/{d}/ingest/manifest.csv",
        "skipped": f"{RESULTS}/{d}/ingest/skipped.csv",
        "summary": f"{RESULTS}/{d}/preprocessed/summary.json",
        "train": preprocessed(d, "train"),
        "grids": [f"{RESULTS}/{d}/dcgan/{label}/grid.png" for label in labels],
        "losses": [f"{RESULTS}/{d}/dcgan/{label}/losses.csv" for label in labels],
        "metrics": f"{RESULTS}/{c}/classifier/metrics.json",
        "history": f"{RESULTS}/{c}/classifier/history.csv",
        "sets": f"{RESULTS}/{d}/dcgan/score/sets.csv",
        "score_summary": f"{RESULTS}/{d}/dcgan/score/summary.csv",
        "benchmarks": [
            f"{BENCH}/ingest/{d}.tsv",
            f"{BENCH}/preprocess/{d}.tsv",
            *[f"{BENCH}/train_dcgan/{d}_{label}.tsv" for label in labels],
            *[f"{BENCH}/generate_dcgan/{d}_{label}.tsv" for label in labels],
            f"{BENCH}/train_classifier/{c}.tsv",
            f"{BENCH}/score_dcgan/{d}.tsv",
        ],
    }
