from lungsynth.studies.jobs import ablation_tables_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    ablation_tables_job(
        dict(zip(snakemake.params.cells, snakemake.input.folds)), snakemake.output.table, snakemake.output.plot
    )
