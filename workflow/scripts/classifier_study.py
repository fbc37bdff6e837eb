from lungsynth.studies.jobs import classifier_study_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    cells = [tuple(cell) for cell in snakemake.params.cells]  # (ratio, seed), as the input files
    classifier_study_job(dict(zip(cells, snakemake.input)), snakemake.output.table, snakemake.output.plot)
