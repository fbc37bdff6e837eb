from lungsynth.methods.dcgan.jobs import train_classifier_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    train_classifier_job(
        snakemake.input.train,
        snakemake.input.val,
        snakemake.input.test,
        settings=dict(snakemake.params.settings),
        model_out=snakemake.output.model,
        metrics_out=snakemake.output.metrics,
        history_out=snakemake.output.history,
        work_dir=snakemake.params.work,
    )
