from pathlib import Path

from lungsynth.report import ReportInputs, build_report
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    i = snakemake.input
    labels = snakemake.params.labels
    build_report(
        ReportInputs(
            dataset=snakemake.params.dataset,
            manifest=i.manifest,
            skipped=i.skipped,
            preprocess_summary=i.summary,
            train_split=i.train,
            generated_grids=dict(zip(labels, i.grids)),
            losses=dict(zip(labels, i.losses)),
            classifier_metrics=i.metrics,
            classifier_history=i.history,
            score_sets=i.sets,
            score_summary=i.score_summary,
            positive_class=snakemake.params.positive,
            benchmarks=list(i.benchmarks),
            config=dict(snakemake.params.config),
        ),
        Path(snakemake.output.html).parent,
        title=snakemake.params.title,
    )
