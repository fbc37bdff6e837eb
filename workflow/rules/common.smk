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
from lungsynth.phantom import (
    is_phantom,
    phantom_read_folder,
    phantom_reader_settings,
)  # noqa: E402
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


def one(pattern, **wildcards):
    """The one path of `pattern` (another rule's output or benchmark, `rules.<rule>...`) for `wildcards`."""
    (path,) = expand(pattern, **wildcards)
    return path


def phantom_folder(name):
    """The folder the phantom rule writes dataset `name` into (the writer's out_dir)."""
    writer = {"phantom_ct": rules.phantom_ct, "phantom_lus": rules.phantom_lus}
    return one(writer[dataset_spec(name)["format"]].output[0], dataset=name)


def dataset_root(name):
    """Folder the ingest stage reads for dataset `name` (for a phantom, where lungsynth.phantom reads it)."""
    spec = dataset_spec(name)
    if is_phantom(spec):
        return f"{phantom_folder(name)}/{phantom_read_folder(spec)}"
    return spec["path"]


def ingest_input(wildcards):
    """The dataset folder and the files its spec names (labels/scores CSV, split lists).

    A folder's mtime misses changes inside it: ingest_content makes ingest
    stale when the files below change.
    """
    spec = dataset_spec(wildcards.dataset)
    if is_phantom(spec):
        return phantom_folder(wildcards.dataset)
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
    if is_phantom(spec):
        return "phantom rule output"
    from lungsynth.data.listing import dataset_fingerprint

    return dataset_fingerprint(spec["path"], spec, exclude=[RESULTS])


def ingest_spec(name):
    """The reader settings of a dataset (a phantom's come from lungsynth.phantom)."""
    spec = dict(dataset_spec(name))
    if is_phantom(spec):
        spec.update(phantom_reader_settings(spec))
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
    return one(rules.train_cgan.output.model, dataset=dataset, method=method, step=step)


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
    """(mode, method, ratio, seed) of every U-Net-study cell, in study order (one unet_cell job each)."""
    from lungsynth.studies.design import unet_study_cells

    return unet_study_cells(config["ablation"]["segmentation"], cgan_methods())


def unet_cell_files(pattern, dataset):
    """`pattern` (an output or the benchmark of unet_cell) of every U-Net-study cell, in unet_cells() order."""
    return [
        one(
            pattern,
            dataset=dataset,
            mode=mode,
            method=method,
            ratio=f"{r:.2f}",
            seed=seed,
        )
        for mode, method, r, seed in unet_cells()
    ]


def classifier_cells():
    """(ratio, seed) of every classifier-study cell."""
    from lungsynth.studies.design import study_ratios

    study = config["ablation"]["classifier"]
    return [(r, seed) for r in study_ratios(study) for seed in study["seeds"]]


def classifier_cell_file(pattern, dataset, ratio, seed):
    """`pattern` (the output or the benchmark of classifier_cell) of one classifier-study cell."""
    return one(pattern, dataset=dataset, ratio=f"{ratio:.2f}", seed=seed)


def classifier_cell_reused(ratio, seed):
    """True for the real-only cell whose seed is classifier.seed: that run is train_classifier's, reused."""
    return ratio == 0 and seed == config["classifier"]["seed"]


def classifier_study_metrics(dataset):
    """metrics.json of every classifier-study cell, in classifier_cells() order (the reused real-only
    cell points at train_classifier's)."""
    return [
        (
            one(rules.train_classifier.output.metrics, dataset=dataset)
            if classifier_cell_reused(r, seed)
            else classifier_cell_file(rules.classifier_cell.output[0], dataset, r, seed)
        )
        for r, seed in classifier_cells()
    ]


def ablation_generated(wildcards):
    """Composites a U-Net cell draws from ([] for the real-only cell)."""
    if wildcards.mode == "real":
        return []
    return expand(
        rules.generate_cgan.output[0],
        dataset=wildcards.dataset,
        method=wildcards.method,
    )


def all_targets():
    targets = []
    if (
        config["dcgan"]["enabled"]
        or config["lusgan"]["enabled"]
        or config["cgan"]["enabled"]
    ):
        targets.append(f"{RESULTS}/report/index.html")
    return targets


# Inputs of the report rule: the other rules' outputs and benchmarks. Every path below is a rule's
# pattern (rules.<rule>.output.<name>, rules.<rule>.benchmark) filled in with one(...) or expand(...);
# the functions run when the DAG is built, after every rule file is included.


def dcgan_report_inputs():
    d, c = dcgan_dataset(), classifier_dataset()
    labels = config["dcgan"]["classes"]
    return {
        "manifest": one(rules.ingest.output.manifest, dataset=d),
        "skipped": one(rules.ingest.output.skipped, dataset=d),
        "files": one(rules.ingest.output.files, dataset=d),
        "summary": one(rules.preprocess.output.summary, dataset=d),
        "train": one(rules.preprocess.output.train, dataset=d),
        "grids": expand(rules.generate_dcgan.output.grid, dataset=d, label=labels),
        "losses": expand(rules.train_dcgan.output.losses, dataset=d, label=labels),
        "metrics": one(rules.train_classifier.output.metrics, dataset=c),
        "history": one(rules.train_classifier.output.history, dataset=c),
        "sets": one(rules.score_dcgan.output.sets, dataset=d),
        "score_summary": one(rules.score_dcgan.output.summary, dataset=d),
        "benchmarks": [
            one(rules.ingest.benchmark, dataset=d),
            one(rules.preprocess.benchmark, dataset=d),
            *expand(rules.train_dcgan.benchmark, dataset=d, label=labels),
            *expand(rules.generate_dcgan.benchmark, dataset=d, label=labels),
            one(rules.train_classifier.benchmark, dataset=c),
            one(rules.score_dcgan.benchmark, dataset=d),
        ],
    }


def lusgan_report_inputs():
    d = lusgan_dataset()
    labels = config["lusgan"]["classes"]
    return {
        "lus_manifest": one(rules.ingest.output.manifest, dataset=d),
        "lus_skipped": one(rules.ingest.output.skipped, dataset=d),
        "lus_files": one(rules.ingest.output.files, dataset=d),
        "lus_train": one(rules.preprocess.output.train, dataset=d),
        "lus_grids": expand(rules.generate_lusgan.output.grid, dataset=d, label=labels),
        "lus_losses": expand(rules.train_lusgan.output.losses, dataset=d, label=labels),
        "lus_summary": one(rules.similarity_lusgan.output.summary, dataset=d),
        "lus_diversity": one(rules.similarity_lusgan.output.diversity, dataset=d),
        "lus_nearest": one(rules.similarity_lusgan.output.nearest, dataset=d),
        "lus_values": one(rules.similarity_lusgan.output.values, dataset=d),
        "benchmarks": [
            *(
                [one(rules.phantom_lus.benchmark, dataset=d)]
                if dataset_spec(d)["format"] == "phantom_lus"
                else []
            ),
            one(rules.ingest.benchmark, dataset=d),
            one(rules.preprocess.benchmark, dataset=d),
            *expand(rules.train_lusgan.benchmark, dataset=d, label=labels),
            *expand(rules.generate_lusgan.benchmark, dataset=d, label=labels),
            one(rules.similarity_lusgan.benchmark, dataset=d),
        ],
    }


def cgan_report_inputs():
    d = cgan_dataset()
    methods = cgan_methods()
    steps = [dict(method=m, step=s) for m in methods for s in cgan_steps(m)]
    return {
        "cgan_summary": one(rules.preprocess_segmentation.output.summary, dataset=d),
        "cgan_table": one(rules.cgan_tables.output.table, dataset=d),
        "cgan_cases": one(rules.cgan_tables.output.cases, dataset=d),
        "cgan_losses": [
            one(rules.train_cgan.output.losses, dataset=d, **s) for s in steps
        ],
        "cgan_generated": expand(
            rules.generate_cgan.output[0], dataset=d, method=methods
        ),
        "benchmarks": [
            *(
                [one(rules.phantom_ct.benchmark, dataset=d)]
                if dataset_spec(d)["format"] == "phantom_ct"
                else []
            ),
            one(rules.ingest.benchmark, dataset=d),
            one(rules.preprocess_segmentation.benchmark, dataset=d),
            one(rules.augment_cgan.benchmark, dataset=d),
            *[one(rules.train_cgan.benchmark, dataset=d, **s) for s in steps],
            *expand(rules.generate_cgan.benchmark, dataset=d, method=methods),
            one(rules.feature_extractor.benchmark, dataset=d),
            *expand(rules.quality_cgan.benchmark, dataset=d, method=methods),
        ],
    }


def ablation_report_inputs():
    inputs = {"benchmarks": []}
    if config["ablation"]["segmentation"]["enabled"]:
        d = cgan_dataset()
        inputs["ablation_table"] = one(rules.ablation_tables.output.table, dataset=d)
        inputs["ablation_plot"] = one(rules.ablation_tables.output.plot, dataset=d)
        inputs["benchmarks"] += unet_cell_files(rules.unet_cell.benchmark, d)
    if config["ablation"]["classifier"]["enabled"]:
        c = classifier_dataset()
        inputs["classifier_study_table"] = one(
            rules.classifier_study.output.table, dataset=c
        )
        inputs["classifier_study_plot"] = one(
            rules.classifier_study.output.plot, dataset=c
        )
        inputs["benchmarks"] += [
            classifier_cell_file(rules.classifier_cell.benchmark, c, r, seed)
            for r, seed in classifier_cells()
            if not classifier_cell_reused(r, seed)
        ]
    return inputs


def report_inputs(wildcards):
    """Named inputs of the report: each enabled branch's files, and all their benchmarks in one list."""
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
