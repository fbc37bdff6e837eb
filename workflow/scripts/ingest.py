from lungsynth.data.ingest import ingest_dataset
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    ingest_dataset(snakemake.params.root, dict(snakemake.params.spec), snakemake.output.manifest,
                   snakemake.output.skipped, snakemake.output.files)
