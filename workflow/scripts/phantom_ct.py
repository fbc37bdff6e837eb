from lungsynth.phantom.ct import write_phantom_ct
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    write_phantom_ct(snakemake.output[0], progress=True, **snakemake.params.phantom)
