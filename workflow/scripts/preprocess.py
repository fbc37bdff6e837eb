from pathlib import Path

from lungsynth.data.preprocess import preprocess_dataset
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    s = snakemake.params.settings
    preprocess_dataset(
        snakemake.input.manifest,
        snakemake.params.root,
        Path(snakemake.output.train).parent,
        window=tuple(s["window"]),
        normalise_8bit=s["normalise_8bit"],
        channels=s["channels"],
        size=s["size"],
        crop_sector=s["crop_sector"],
    )
