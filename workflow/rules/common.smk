import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)

from lungsynth.runlog import prepend_pythonpath  # noqa: E402

prepend_pythonpath(SRC)  # jobs import this checkout's lungsynth (see README, SLURM)

from lungsynth.config import (
    preprocess_settings,
    train_settings,
    validate_config,
)  # noqa: E402
from lungsynth.errors import ConfigError  # noqa: E402
from lungsynth.methods.cgan.specs import (
    METHODS as _CGAN_METHODS,
    VARIANTS as _CGAN_VARIANTS,
)  # noqa: E402

CGAN_METHOD_NAMES = list(_CGAN_METHODS) + list(_CGAN_VARIANTS)

try:
    config.update(validate_config(config))
except ConfigError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    label="[A-Za-z0-9_-]+",
    method="|".join(CGAN_METHOD_NAMES + ["none"]),
    step="global|local|joint|full",
    mode="real|replace|add",
    ratio="[0-9]+[.][0-9]+",
    seed="[0-9]+",


RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


def dataset_spec(name):
    return config["datasets"][name]


def dataset_root(name):
    """Folder the ingest stage reads for dataset `name`."""
    spec = dataset_spec(name)
    if spec["format"] == "phantom_ct":
        return f"{RESULTS}/phantom/{name}/{spec['read_as']}"
    if spec["format"] == "phantom_lus":
        return f"{RESULTS}/phantom_lus/{name}/mat"
    return spec["path"]


def ingest_input(wildcards):
    """The dataset folder and the files its spec names (labels/scores CSV, split lists).

    A folder's mtime misses changes inside it: ingest_content makes ingest
    stale when the files below change.
    """
    spec = dataset_spec(wildcards.dataset)
    if spec["format"] == "phantom_ct":
        return f"{RESULTS}/phantom/{wildcards.dataset}"
    if spec["format"] == "phantom_lus":
        return f"{RESULTS}/phantom_lus/{wildcards.dataset}"
    if not Path(spec["path"]).exists():
        raise WorkflowError(
            f"config key datasets.{wildcards.dataset}.path: folder '{spec['path']}' does not exist "
            f"(relative paths are taken from {Path.cwd()})"
        )
    from lungsynth.data.listing import named_files

    return [spec["path"], *named_files(spec["path"], spec)]


def ingest_content(wildcards):
    """params.content of ingest: a digest of the dataset's file listing (paths, sizes, mtimes).

    Snakemake reruns a job whose params changed, so ingest and everything
    downstream rerun exactly when a file a reader could read is added,
    removed or modified (rule: lungsynth.data.listing). Phantoms are the
    phantom rule's output, which already drives their staleness: a constant.
    """
    spec = dataset_spec(wildcards.dataset)
    if spec["format"] in ("phantom_ct", "phantom_lus"):
        return "phantom rule output"
    from lungsynth.data.listing import dataset_fingerprint

    return dataset_fingerprint(spec["path"], spec, exclude=[RESULTS])


def ingest_spec(name):
    """The reader settings of a dataset (the phantom is read as class folders of DICOM series)."""
    spec = dict(dataset_spec(name))
    if spec["format"] == "phantom_ct" and spec["read_as"] == "nifti":
        spec["format"] = "nifti"
        spec["labels_csv"] = "../labels.csv"
    elif spec["format"] == "phantom_ct":
        spec["format"] = "dicom"
        spec["classes"] = {"covid": "covid", "noncovid": "noncovid"}
    elif spec["format"] == "phantom_lus":
        spec["format"] = "lus_mat"
        spec["scores_csv"] = "scores.csv"
    for key in ("phantom", "preprocess", "read_as"):
        spec.pop(key, None)
    return spec


def ct_phantom_settings(name):
    """The arguments of write_phantom_ct taken from datasets.<name>.phantom."""
    phantom = dataset_spec(name)["phantom"]
    return {
        k: phantom[k]
        for k in ("n_patients", "covid_fraction", "slices_per_patient", "size", "seed")
    }


def lus_phantom_settings(name):
    """The arguments of write_phantom_lus taken from datasets.<name>.phantom."""
    phantom = dataset_spec(name)["phantom"]
    return {
        k: phantom[k] for k in ("n_patients", "areas_per_patient", "frames", "seed")
    }


def preprocessed(dataset, split):
    return f"{RESULTS}/{dataset}/preprocessed/{split}.pt"


def dcgan_dataset():
    return config["dcgan"]["dataset"]


def classifier_dataset():
    return config["classifier"]["dataset"] or config["dcgan"]["dataset"]


def lusgan_dataset():
    return config["lusgan"]["dataset"]


def cgan_dataset():
    return config["cgan"]["dataset"]


def cgan_methods():
    """Methods and Table V variants of the conditional-GAN branch, in table order."""
    from lungsynth.methods.cgan.specs import configured_methods

    return configured_methods(config["cgan"])


def cgan_model_file(dataset, method, step):
    return f"{RESULTS}/{dataset}/cgan/{method}/{step}/model.pt"


def cgan_previous_step(wildcards):
    """The previous step's weights of a method ([] for its first step)."""
    steps = cgan_steps(wildcards.method)
    index = steps.index(wildcards.step)
    return (
        [cgan_model_file(wildcards.dataset, wildcards.method, steps[index - 1])]
        if index
        else []
    )


def cgan_steps(method):
    from lungsynth.methods.cgan.specs import method_spec, method_steps

    return list(method_steps(method_spec(method, config["cgan"]["model"])))


def cgan_final_model(wildcards):
    return cgan_model_file(
        wildcards.dataset, wildcards.method, cgan_steps(wildcards.method)[-1]
    )


def unet_cells():
    """Cell folders of the U-Net study, relative to results/<dataset>/ablation/."""
    from lungsynth.studies.design import unet_study_cells

    cells = unet_study_cells(config["ablation"]["segmentation"], cgan_methods())
    return [f"{mode}/{method}/r{r:.2f}/s{seed}" for mode, method, r, seed in cells]


def classifier_cells():
    """Cells ``r<ratio>/s<seed>`` of the classifier study."""
    from lungsynth.studies.design import study_ratios

    study = config["ablation"]["classifier"]
    return [f"r{r:.2f}/s{seed}" for r in study_ratios(study) for seed in study["seeds"]]


def classifier_cell_reused(cell):
    """True for the real-only cell whose seed is classifier.seed: that run is train_classifier's, reused."""
    return cell == f"r0.00/s{config['classifier']['seed']}"


def classifier_study_metrics(dataset):
    """Cell -> metrics.json of the classifier study (the reused real-only cell points at train_classifier's)."""
    return {
        cell: (
            f"{RESULTS}/{dataset}/classifier/metrics.json"
            if classifier_cell_reused(cell)
            else f"{RESULTS}/{dataset}/classifier_study/{cell}/metrics.json"
        )
        for cell in classifier_cells()
    }


def ablation_generated(wildcards):
    """Composites a U-Net cell draws from ([] for the real-only cell)."""
    if wildcards.mode == "real":
        return []
    return [f"{RESULTS}/{wildcards.dataset}/cgan/{wildcards.method}/generated.pt"]


def ablation_report_inputs():
    inputs = {"benchmarks": []}
    if config["ablation"]["segmentation"]["enabled"]:
        d = cgan_dataset()
        inputs["ablation_table"] = f"{RESULTS}/{d}/ablation/tables.csv"
        inputs["ablation_plot"] = f"{RESULTS}/{d}/ablation/metrics_vs_ratio.png"
        for cell in unet_cells():
            mode, method, ratio, seed = Path(cell).parts
            inputs["benchmarks"].append(
                f"{BENCH}/unet_cell/{d}/{mode}/{method}/{ratio}_{seed}.tsv"
            )
    if config["ablation"]["classifier"]["enabled"]:
        c = classifier_dataset()
        inputs["classifier_study_table"] = f"{RESULTS}/{c}/classifier_study/summary.csv"
        inputs["classifier_study_plot"] = (
            f"{RESULTS}/{c}/classifier_study/metrics_vs_ratio.png"
        )
        inputs["benchmarks"] += [
            f"{BENCH}/classifier_cell/{c}/{'_'.join(Path(cell).parts)}.tsv"
            for cell in classifier_cells()
            if not classifier_cell_reused(cell)
        ]
    return inputs


def cgan_report_inputs():
    d = cgan_dataset()
    methods = cgan_methods()
    return {
        "cgan_summary": f"{RESULTS}/{d}/segmentation/summary.json",
        "cgan_table": f"{RESULTS}/{d}/cgan/table2.csv",
        "cgan_cases": f"{RESULTS}/{d}/cgan/cases.png",
        "cgan_losses": [
            f"{RESULTS}/{d}/cgan/{m}/{s}/losses.csv"
            for m in methods
            for s in cgan_steps(m)
        ],
        "cgan_generated": [f"{RESULTS}/{d}/cgan/{m}/generated.pt" for m in methods],
        "benchmarks": [
            *(
                [f"{BENCH}/phantom_ct/{d}.tsv"]
                if dataset_spec(d)["format"] == "phantom_ct"
                else []
            ),
            f"{BENCH}/ingest/{d}.tsv",
            f"{BENCH}/preprocess_segmentation/{d}.tsv",
            f"{BENCH}/augment_cgan/{d}.tsv",
            *[
                f"{BENCH}/train_cgan/{d}/{m}/{s}.tsv"
                for m in methods
                for s in cgan_steps(m)
            ],
            *[f"{BENCH}/generate_cgan/{d}/{m}.tsv" for m in methods],
            f"{BENCH}/feature_extractor/{d}.tsv",
            *[f"{BENCH}/quality_cgan/{d}/{m}.tsv" for m in methods],
        ],
    }


def all_targets():
    targets = []
    if (
        config["dcgan"]["enabled"]
        or config["lusgan"]["enabled"]
        or config["cgan"]["enabled"]
    ):
        targets.append(f"{RESULTS}/report/index.html")
    return targets


def report_inputs(wildcards):
    parts = []
    if config["dcgan"]["enabled"]:
        parts.append(dcgan_report_inputs())
    if config["lusgan"]["enabled"]:
        parts.append(lusgan_report_inputs())
    if config["cgan"]["enabled"]:
        parts.append(cgan_report_inputs())
    if (
        config["ablation"]["segmentation"]["enabled"]
        or config["ablation"]["classifier"]["enabled"]
    ):
        parts.append(ablation_report_inputs())
    inputs = {"benchmarks": []}
    for part in parts:
        inputs["benchmarks"] += part.pop("benchmarks")
        inputs.update(part)
    return inputs


def lusgan_report_inputs():
    d = lusgan_dataset()
    labels = config["lusgan"]["classes"]
    return {
        "lus_manifest": f"{RESULTS}/{d}/ingest/manifest.csv",
        "lus_skipped": f"{RESULTS}/{d}/ingest/skipped.csv",
        "lus_files": f"{RESULTS}/{d}/ingest/files.csv",
        "lus_train": preprocessed(d, "train"),
        "lus_grids": [f"{RESULTS}/{d}/lusgan/{label}/grid.png" for label in labels],
        "lus_losses": [f"{RESULTS}/{d}/lusgan/{label}/losses.csv" for label in labels],
        "lus_summary": f"{RESULTS}/{d}/lusgan/similarity/summary.csv",
        "lus_diversity": f"{RESULTS}/{d}/lusgan/similarity/diversity.csv",
        "lus_nearest": f"{RESULTS}/{d}/lusgan/similarity/nearest.csv",
        "lus_values": f"{RESULTS}/{d}/lusgan/similarity/values.pt",
        "benchmarks": [
            *(
                [f"{BENCH}/phantom_lus/{d}.tsv"]
                if dataset_spec(d)["format"] == "phantom_lus"
                else []
            ),
            f"{BENCH}/ingest/{d}.tsv",
            f"{BENCH}/preprocess/{d}.tsv",
            *[f"{BENCH}/train_lusgan/{d}_{label}.tsv" for label in labels],
            *[f"{BENCH}/generate_lusgan/{d}_{label}.tsv" for label in labels],
            f"{BENCH}/similarity_lusgan/{d}.tsv",
        ],
    }


def dcgan_report_inputs():
    d, c = dcgan_dataset(), classifier_dataset()
    labels = config["dcgan"]["classes"]
    return {
        "manifest": f"{RESULTS}/{d}/ingest/manifest.csv",
        "skipped": f"{RESULTS}/{d}/ingest/skipped.csv",
        "files": f"{RESULTS}/{d}/ingest/files.csv",
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
