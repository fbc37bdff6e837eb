from lungsynth.methods.cgan.jobs import augment_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    s = dict(snakemake.params.settings)
    augment_job(snakemake.input.test, snakemake.output[0], snakemake.params.n_slices, s | {"seed": s["seed"] + 2})
