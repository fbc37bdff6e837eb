from lungsynth.methods.dcgan.jobs import score_dcgan_job
from lungsynth.runlog import job_log

with job_log(snakemake.log[0], snakemake.threads):
    score_dcgan_job(
        model=snakemake.input.model,
        test_split=snakemake.input.test,
        generated=dict(zip(snakemake.params.labels, snakemake.input.generated)),
        settings=dict(snakemake.params.settings),
        sets_out=snakemake.output.sets,
        summary_out=snakemake.output.summary,
        device=snakemake.params.device,
    )
