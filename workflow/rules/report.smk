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
    conda:
        "../../envs/lungsynth.yaml"
    log:
        f"{LOGS}/report.log",
    script:
        "../scripts/report.py"
