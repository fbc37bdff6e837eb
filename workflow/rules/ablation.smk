rule augment_segtest:
    """Augment the segmentation-test split: the fixed real test set of the U-Net study (seed 001 - 73 -> 10,220)."""
    input:
        test=rules.preprocess_segmentation.output.test,
    output:
        f"{RESULTS}/{{dataset}}/ablation/data/test_aug.pt",
    log:
        f"{LOGS}/augment_segtest/{{dataset}}.log",
    benchmark:
        f"{BENCH}/augment_segtest/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        settings=config["cgan"]["augment"],
        n_slices=config["ablation"]["segmentation"]["test_count"],
    script:
        "../scripts/augment_segtest.py"


rule unet_cell:
    """One cell of the U-Net study: (mode, method, ratio, seed) -> per-fold Dice, sensitivity, specificity."""
    input:
        real=rules.augment_cgan.output.test,
        generated=ablation_generated,
        test=rules.augment_segtest.output[0],
    output:
        model=f"{RESULTS}/{{dataset}}/ablation/{{mode}}/{{method}}/r{{ratio}}/s{{seed}}/model.pt",
        folds=f"{RESULTS}/{{dataset}}/ablation/{{mode}}/{{method}}/r{{ratio}}/s{{seed}}/folds.csv",
        summary=f"{RESULTS}/{{dataset}}/ablation/{{mode}}/{{method}}/r{{ratio}}/s{{seed}}/summary.json",
    log:
        f"{LOGS}/unet_cell/{{dataset}}/{{mode}}/{{method}}/r{{ratio}}_s{{seed}}.log",
    benchmark:
        f"{BENCH}/unet_cell/{{dataset}}/{{mode}}/{{method}}/r{{ratio}}_s{{seed}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        model=config["ablation"]["segmentation"]["model"],
        settings=config["ablation"]["segmentation"]["train"],
        folds=config["ablation"]["segmentation"]["folds"],
        work=f"{RESULTS}/{{dataset}}/ablation/{{mode}}/{{method}}/r{{ratio}}/s{{seed}}/work",
    script:
        "../scripts/unet_cell.py"


rule ablation_tables:
    """Tables III and IV (and Table V's Dice column): mean with fold-only and seed-inclusive CIs, and plots."""
    input:
        folds=lambda wc: unet_cell_files(rules.unet_cell.output.folds, wc.dataset),
    output:
        table=f"{RESULTS}/{{dataset}}/ablation/tables.csv",
        plot=report(
            f"{RESULTS}/{{dataset}}/ablation/metrics_vs_ratio.png",
            caption="../report/ablation_plot.rst",
            category="Seed 001 segmentation study",
        ),
    log:
        f"{LOGS}/ablation_tables/{{dataset}}.log",
    conda:
        "../../envs/report.yaml"
    params:
        cells=unet_cells(),  # (mode, method, ratio, seed) of each folds file, in the same order
    script:
        "../scripts/ablation_tables.py"


rule classifier_cell:
    """One cell of the classifier study: DenseNet-169 on real + ratio x DCGAN images per class, one seed."""
    input:
        train=rules.preprocess.output.train,
        val=rules.preprocess.output.val,
        test=rules.preprocess.output.test,
        generated=expand(
            rules.generate_dcgan.output.tensor,
            dataset=dcgan_dataset(),
            label=config["dcgan"]["classes"],
        ),
    output:
        f"{RESULTS}/{{dataset}}/classifier_study/r{{ratio}}/s{{seed}}/metrics.json",
    log:
        f"{LOGS}/classifier_cell/{{dataset}}/r{{ratio}}_s{{seed}}.log",
    benchmark:
        f"{BENCH}/classifier_cell/{{dataset}}/r{{ratio}}_s{{seed}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1  # cells are many and independent: run them side by side rather than each on two threads
    resources:
        gpu=1,
    params:
        labels=config["dcgan"]["classes"],
        settings=config["classifier"],
        work=f"{RESULTS}/{{dataset}}/classifier_study/r{{ratio}}/s{{seed}}/work",
    script:
        "../scripts/classifier_cell.py"


rule classifier_study:
    """Accuracy, F1 and AUC against the synthetic share: mean and CI over training seeds, and a plot."""
    input:
        lambda wc: classifier_study_metrics(wc.dataset),
    output:
        table=f"{RESULTS}/{{dataset}}/classifier_study/summary.csv",
        plot=report(
            f"{RESULTS}/{{dataset}}/classifier_study/metrics_vs_ratio.png",
            caption="../report/ablation_plot.rst",
            category="Seed 000 classifier study",
        ),
    log:
        f"{LOGS}/classifier_study/{{dataset}}.log",
    conda:
        "../../envs/report.yaml"
    params:
        cells=classifier_cells(),  # (ratio, seed) of each metrics file, in the same order
    script:
        "../scripts/classifier_study.py"
