from lungsynth.methods.lusgan.jobs import train_lusgan_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    train_lusgan_job(snakemake.input.train, snakemake.wildcards.label, generator_out=snakemake.output.generator,
                     losses_out=snakemake.output.losses, **snakemake.params)  # settings, model_config, work_dir
