def report_inputs(wildcards):
    d, c = dcgan_dataset(), classifier_dataset()
    labels = config["dcgan"]["classes"]
    return {
        "manifest": f"{RESULTS}/{d}/ingest/manifest.csv",
        "skipped": f"{RESULTS}/{d}/ingest/skipped.csv",
        "summary": f"{RESULTS}/{d}/preprocessed/summary.json",
        "train": preprocessed(d, "train"),
        "grids": [f"{RESULTS}/{d}/dcgan/{label}/grid.png" for label in labels],
        "losses": [f"{RESULTS}/{d}/dcgan/{label}/losses.csv" for label in labels],
        "metrics": f"{RESULTS}/{c}/classifier/metrics.json",
        "history": f"{RESULTS}/{c}/classifier/history.csv",
        "sets": f"{RESULTS}/{d}/dcgan/score/sets.csv",
        "score_summary": f"{RESULTS}/{d}/dcgan/score/summary.csv",
        "benchmarks": [
            f"{BENCH}/ingest/{d}.tsv",
            f"{BENCH}/preprocess/{d}.tsv",
            *[f"{BENCH}/train_dcgan/{d}_{label}.tsv" for label in labels],
            *[f"{BENCH}/generate_dcgan/{d}_{label}.tsv" for label in labels],
            f"{BENCH}/train_classifier/{c}.tsv",
            f"{BENCH}/score_dcgan/{d}.tsv",
        ],
    }


rule report:
    """The HTML report: dataset, real vs synthetic grids, losses, classifier and seed 000's table."""
    input:
        unpack(report_inputs),
    output:
        html=f"{RESULTS}/report/index.html",
        losses=report(
            f"{RESULTS}/report/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
        ),
        scatter=report(
            f"{RESULTS}/report/positive_rate_scatter.png",
            caption="../report/positive_rate_scatter.rst",
            category="Seed 000 validation",
        ),
        history=report(
            f"{RESULTS}/report/classifier_history.png",
            caption="../report/classifier_history.rst",
            category="Classifier",
        ),
    params:
        dataset=dcgan_dataset(),
        labels=config["dcgan"]["classes"],
        positive=config["classifier"]["positive_class"],
        title=config["report"]["title"],
        config=config,
    log:
        f"{LOGS}/report.log",
    script:
        "../scripts/report.py"
