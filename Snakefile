# lungsynth: trained GANs and synthetic lung images from a small dataset, and proof of their quality.
# The config is validated against the package's schema (src/lungsynth/schemas/config.schema.yaml) before anything runs.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/dcgan.smk"
include: "workflow/rules/lusgan.smk"
include: "workflow/rules/cgan.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/report.smk"


# Seconds-long aggregation jobs: run by the submitting process, not queued on a cluster.
localrules:
    all,
    cgan_tables,
    ablation_tables,
    classifier_study,
    report,


rule all:
    default_target: True
    input:
        all_targets(),
