from lungsynth.studies.jobs import unet_cell_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    w = snakemake.wildcards
    unet_cell_job(
        snakemake.input.real,
        snakemake.input.generated[0] if snakemake.input.generated else None,
        snakemake.input.test,
        mode=w.mode,
        ratio=float(w.ratio),
        seed=int(w.seed),
        model_config=dict(snakemake.params.model),
        settings=dict(snakemake.params.settings),
        folds=snakemake.params.folds,
        work_dir=snakemake.params.work,
        model_out=snakemake.output.model,
        folds_out=snakemake.output.folds,
        summary_out=snakemake.output.summary,
    )
