from lungsynth.methods.cgan.jobs import quality_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    quality_job(
        snakemake.input.test,
        snakemake.input.generated,
        snakemake.input.extractor,
        snakemake.output[0],
        dict(snakemake.params.settings),
    )
