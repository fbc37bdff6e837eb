from pathlib import Path

from lungsynth.report.build import AblationReportInputs, CGANReportInputs, LUSReportInputs, ReportInputs, build_report
from lungsynth.runlog import job_log

with job_log(snakemake.log[0]):
    i = dict(snakemake.input.items())
    p = snakemake.params
    dcgan = {}
    if "manifest" in i:
        dcgan = dict(
            dataset=p.dataset,
            manifest=i["manifest"],
            skipped=i["skipped"],
            files=i.get("files"),
            preprocess_summary=i["summary"],
            train_split=i["train"],
            generated_grids=dict(zip(p.labels, i["grids"])),
            losses=dict(zip(p.labels, i["losses"])),
            classifier_metrics=i["metrics"],
            classifier_history=i["history"],
            score_sets=i["sets"],
            score_summary=i["score_summary"],
            positive_class=p.positive,
        )
    lus = None
    if "lus_manifest" in i:
        lus = LUSReportInputs(
            dataset=p.lus_dataset,
            manifest=i["lus_manifest"],
            skipped=i["lus_skipped"],
            files=i.get("lus_files"),
            train_split=i["lus_train"],
            generated_grids=dict(zip(p.lus_labels, i["lus_grids"])),
            losses=dict(zip(p.lus_labels, i["lus_losses"])),
            similarity_summary=i["lus_summary"],
            diversity=i["lus_diversity"],
            nearest=i["lus_nearest"],
            values=i["lus_values"],
        )
    cgan = None
    if "cgan_table" in i:
        methods = list(p.cgan_methods)
        losses = {m: [f for f in i["cgan_losses"] if f"/cgan/{m}/" in f] for m in methods}
        cgan = CGANReportInputs(
            dataset=p.cgan_dataset,
            summary=i["cgan_summary"],
            table=i["cgan_table"],
            cases=i["cgan_cases"],
            losses=losses,
            generated=dict(zip(methods, i["cgan_generated"])),
        )
    ablation = None
    if "ablation_table" in i or "classifier_study_table" in i:
        ablation = AblationReportInputs(
            segmentation_table=i.get("ablation_table"),
            segmentation_plot=i.get("ablation_plot"),
            classifier_table=i.get("classifier_study_table"),
            classifier_plot=i.get("classifier_study_plot"),
        )
    build_report(
        ReportInputs(**dcgan, lus=lus, cgan=cgan, ablation=ablation, benchmarks=list(i["benchmarks"]), config=dict(p.config)),
        Path(snakemake.output.html).parent,
        title=p.title,
    )
