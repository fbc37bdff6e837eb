from pathlib import Path

from lungsynth.report.build import AblationReportInputs, CGANReportInputs, LUSReportInputs, ReportInputs, build_report
from lungsynth.runlog import job_log


def per_class_branch(i, prefix, dataset, labels):
    """What the DCGAN and LUS branches both hand the report: inputs ``<prefix>manifest``, ``<prefix>grids``, ..."""
    return dict(
        dataset=dataset,
        manifest=i[f"{prefix}manifest"],
        skipped=i[f"{prefix}skipped"],
        files=i.get(f"{prefix}files"),
        train_split=i[f"{prefix}train"],
        generated_grids=dict(zip(labels, i[f"{prefix}grids"])),
        losses=dict(zip(labels, i[f"{prefix}losses"])),
    )


# report field <- input key, per branch (the per-class branches share per_class_branch's fields)
DCGAN = {"preprocess_summary": "summary", "classifier_metrics": "metrics", "classifier_history": "history",
         "score_sets": "sets", "score_summary": "score_summary"}
LUS = {"similarity_summary": "lus_summary", "diversity": "lus_diversity", "nearest": "lus_nearest",
       "values": "lus_values"}

with job_log(snakemake.log[0]):
    i = dict(snakemake.input.items())
    p = snakemake.params
    dcgan = {}
    if "manifest" in i:
        dcgan = dict(**per_class_branch(i, "", p.dataset, p.labels), **{f: i[k] for f, k in DCGAN.items()},
                     positive_class=p.positive)
    lus = None
    if "lus_manifest" in i:
        lus = LUSReportInputs(**per_class_branch(i, "lus_", p.lus_dataset, p.lus_labels),
                              **{f: i[k] for f, k in LUS.items()})
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
