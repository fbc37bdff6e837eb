from lungsynth.studies.jobs import ablation_tables_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    cells = [tuple(cell) for cell in snakemake.params.cells]  # (mode, method, ratio, seed), as input.folds
    ablation_tables_job(dict(zip(cells, snakemake.input.folds)), snakemake.output.table, snakemake.output.plot)
