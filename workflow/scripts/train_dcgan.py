from lungsynth.methods.dcgan.jobs import train_dcgan_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    train_dcgan_job(snakemake.input.train, snakemake.wildcards.label, generator_out=snakemake.output.generator,
                    losses_out=snakemake.output.losses, **snakemake.params)  # settings, model_config, work_dir
