from pathlib import Path

from lungsynth.data.preprocess import preprocess_dataset
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    s = snakemake.params.settings  # window, normalise_8bit, channels, size, crop_sector
    out_dir = Path(snakemake.output.train).parent
    preprocess_dataset(snakemake.input.manifest, snakemake.params.root, out_dir, **(s | {"window": tuple(s["window"])}))
