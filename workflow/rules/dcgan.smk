rule train_dcgan:
    """Train seed 000's DCGAN on one class; checkpoints in work/ survive a killed job and are resumed."""
    input:
        train=rules.preprocess.output.train,
    output:
        generator=f"{RESULTS}/{{dataset}}/dcgan/{{label}}/generator.pt",
        losses=f"{RESULTS}/{{dataset}}/dcgan/{{label}}/losses.csv",
    log:
        f"{LOGS}/train_dcgan/{{dataset}}_{{label}}.log",
    benchmark:
        f"{BENCH}/train_dcgan/{{dataset}}_{{label}}.tsv"
    priority: 2  # heads the longest chain (generate, score, the classifier study)
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:  # named as train_dcgan_job's arguments
        settings=lambda wc: train_settings(config, wc.label),
        model_config=config["dcgan"]["model"],
        work_dir=f"{RESULTS}/{{dataset}}/dcgan/{{label}}/work",
    script:
        "../scripts/train_dcgan.py"


rule generate_dcgan:
    """Sample N images of one class: PNG files, one tensor file and a sample grid."""
    input:
        generator=rules.train_dcgan.output.generator,
    output:
        tensor=f"{RESULTS}/{{dataset}}/dcgan/{{label}}/generated.pt",
        images=directory(f"{RESULTS}/{{dataset}}/dcgan/{{label}}/generated"),
        grid=report(
            f"{RESULTS}/{{dataset}}/dcgan/{{label}}/grid.png",
            caption="../report/generated_grid.rst",
            category="Synthetic images",
            labels={"class": "{label}"},
        ),
    log:
        f"{LOGS}/generate_dcgan/{{dataset}}_{{label}}.log",
    benchmark:
        f"{BENCH}/generate_dcgan/{{dataset}}_{{label}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        family="dcgan",
        settings=config["dcgan"]["generate"],
        device=lambda wc: train_settings(config, wc.label)["device"],
    script:
        "../scripts/generate_unconditional.py"


rule train_classifier:
    """DenseNet-169 on the real train split, best validation-AUC epoch, metrics on the real test split."""
    input:
        train=rules.preprocess.output.train,
        val=rules.preprocess.output.val,
        test=rules.preprocess.output.test,
    output:
        model=f"{RESULTS}/{{dataset}}/classifier/model.pt",
        metrics=f"{RESULTS}/{{dataset}}/classifier/metrics.json",
        history=f"{RESULTS}/{{dataset}}/classifier/history.csv",
    log:
        f"{LOGS}/train_classifier/{{dataset}}.log",
    benchmark:
        f"{BENCH}/train_classifier/{{dataset}}.tsv"
    priority: 1  # long; start it early rather than last
    conda:
        "../../envs/gan.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        settings=config["classifier"],
        work=f"{RESULTS}/{{dataset}}/classifier/work",
    script:
        "../scripts/train_classifier.py"


rule score_dcgan:
    """Seed 000's validation: share of generated (and real) images the classifier calls positive, per set."""
    input:
        model=one(rules.train_classifier.output.model, dataset=classifier_dataset()),
        test=one(rules.preprocess.output.test, dataset=classifier_dataset()),
        generated=expand(
            rules.generate_dcgan.output.tensor,
            label=config["dcgan"]["classes"],
            allow_missing=True,
        ),
    output:
        sets=f"{RESULTS}/{{dataset}}/dcgan/score/sets.csv",
        summary=f"{RESULTS}/{{dataset}}/dcgan/score/summary.csv",
    log:
        f"{LOGS}/score_dcgan/{{dataset}}.log",
    benchmark:
        f"{BENCH}/score_dcgan/{{dataset}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        labels=config["dcgan"]["classes"],
        settings=config["score"],
        device=config["classifier"]["device"],
    script:
        "../scripts/score_dcgan.py"
