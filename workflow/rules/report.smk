REPORT_FIGURES = {}
if config["dcgan"]["enabled"]:
    REPORT_FIGURES.update(
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
    )
if config["lusgan"]["enabled"]:
    REPORT_FIGURES.update(
        lus_losses=report(
            f"{RESULTS}/report/lus_loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
        ),
        lus_boxplots=report(
            f"{RESULTS}/report/lus_similarity_boxplots.png",
            caption="../report/lus_similarity.rst",
            category="Seed 003 similarity",
        ),
    )


rule report:
    """The HTML report: every enabled branch's data, images, training curves and scores."""
    input:
        unpack(report_inputs),
    output:
        **REPORT_FIGURES,
        html=f"{RESULTS}/report/index.html",
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        dataset=dcgan_dataset(),
        labels=config["dcgan"]["classes"],
        positive=config["classifier"]["positive_class"],
        lus_dataset=lusgan_dataset(),
        lus_labels=config["lusgan"]["classes"],
        cgan_dataset=cgan_dataset(),
        cgan_methods=cgan_methods(),
        title=config["report"]["title"],
        config=config,
    script:
        "../scripts/report.py"
