from lungsynth.methods.lusgan.jobs import similarity_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    similarity_job(
        generated=dict(zip(snakemake.params.labels, snakemake.input.generated)),
        train_split=snakemake.input.train,
        test_split=snakemake.input.test,
        settings=dict(snakemake.params.settings),
        summary_out=snakemake.output.summary,
        diversity_out=snakemake.output.diversity,
        nearest_out=snakemake.output.nearest,
        values_out=snakemake.output.values,
    )
