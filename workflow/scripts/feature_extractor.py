from lungsynth.methods.cgan.jobs import feature_extractor_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    feature_extractor_job(
        snakemake.input.train,
        snakemake.output.model,
        snakemake.output.history,
        dict(snakemake.params.settings),
        work_dir=snakemake.params.work,
    )
