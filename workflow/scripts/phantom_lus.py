from lungsynth.phantom.lus import write_phantom_lus
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    write_phantom_lus(snakemake.output[0], progress=True, **snakemake.params.phantom)
