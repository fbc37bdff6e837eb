from pathlib import Path

from lungsynth.runlog import job_log
from lungsynth.data.segmentation import preprocess_segmentation

with job_log(snakemake.log[0]):
    s = snakemake.params.settings
    preprocess_segmentation(
        snakemake.input.manifest,
        snakemake.params.root,
        Path(snakemake.output.train).parent,
        window=tuple(s["window"]),
        normalise_8bit=s["normalise_8bit"],
        size=s["size"],
        lung_mask=snakemake.params.lung_mask,
        require_infection=snakemake.params.require_infection,
    )
