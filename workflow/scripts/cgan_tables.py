from lungsynth.methods.cgan.jobs import cases_figure_job, table2
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    methods = list(snakemake.params.methods)
    table2(dict(zip(methods, snakemake.input.quality)), snakemake.output.table)
    cases_figure_job(
        snakemake.input.test,
        dict(zip(methods, snakemake.input.generated)),
        snakemake.output.cases,
        n_cases=snakemake.params.cases,
    )
