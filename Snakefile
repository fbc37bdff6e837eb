# lungsynth: trained GANs and synthetic lung images from a small dataset, and proof of their quality.
# The config is validated against workflow/schemas/config.schema.yaml before anything runs.
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


rule all:
    input:
        all_targets(),
    default_target: True
