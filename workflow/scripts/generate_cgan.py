from lungsynth.methods.cgan.jobs import generate_cgan_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    generate_cgan_job(
        snakemake.input.model,
        snakemake.input.test,
        snakemake.output[0],
        batch_size=snakemake.params.settings["batch_size"],
        device=snakemake.params.device,
    )
