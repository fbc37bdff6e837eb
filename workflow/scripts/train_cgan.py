from lungsynth.methods.cgan.jobs import train_cgan_step_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    train_cgan_step_job(
        train_aug=snakemake.input.train,
        init_model=snakemake.input.init[0] if snakemake.input.init else None,
        method=snakemake.wildcards.method,
        step=snakemake.wildcards.step,
        model_out=snakemake.output.model,
        losses_out=snakemake.output.losses,
        **snakemake.params,  # model_config, settings, work_dir
    )
