from lungsynth.methods.cgan.jobs import augment_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    s = dict(snakemake.params.settings)
    augment_job(snakemake.input.train, snakemake.output.train, s["train_count"], s)
    augment_job(snakemake.input.test, snakemake.output.test, s["test_count"], s | {"seed": s["seed"] + 1})
