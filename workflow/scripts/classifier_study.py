from lungsynth.studies.jobs import classifier_study_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    classifier_study_job(snakemake.params.cells, snakemake.output.table, snakemake.output.plot)
