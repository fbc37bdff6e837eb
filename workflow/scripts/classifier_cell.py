from lungsynth.studies.jobs import classifier_cell_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    classifier_cell_job(
        snakemake.input.train,
        snakemake.input.val,
        snakemake.input.test,
        dict(zip(snakemake.params.labels, snakemake.input.generated)),
        ratio=float(snakemake.wildcards.ratio),
        seed=int(snakemake.wildcards.seed),
        settings=dict(snakemake.params.settings),
        metrics_out=snakemake.output[0],
        work_dir=snakemake.params.work,
    )
