from lungsynth.methods.cgan.jobs import train_cgan_step_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    train_cgan_step_job(
        train_aug=snakemake.input.train,
        method=snakemake.wildcards.method,
        step=snakemake.wildcards.step,
        model_config=dict(snakemake.params.model),
        settings=dict(snakemake.params.settings),
        work_dir=snakemake.params.work,
        model_out=snakemake.output.model,
        losses_out=snakemake.output.losses,
        init_model=snakemake.input.init[0] if snakemake.input.init else None,
    )
