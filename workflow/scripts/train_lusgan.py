from lungsynth.methods.lusgan.jobs import train_lusgan_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    train_lusgan_job(
        train_split=snakemake.input.train,
        label=snakemake.wildcards.label,
        model_config=dict(snakemake.params.model),
        settings=dict(snakemake.params.settings),
        work_dir=snakemake.params.work,
        generator_out=snakemake.output.generator,
        losses_out=snakemake.output.losses,
    )
