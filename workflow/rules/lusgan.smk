rule phantom_lus:
    """Write the built-in lung-ultrasound phantom (.mat videos in both layouts, video files, score tables)."""
    output:
        directory(f"{RESULTS}/phantom_lus/{{dataset}}"),
    log:
        f"{LOGS}/phantom_lus/{{dataset}}.log",
    benchmark:
        f"{BENCH}/phantom_lus/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        phantom=lambda wc: lus_phantom_settings(wc.dataset),
    script:
        "../scripts/phantom_lus.py"


rule train_lusgan:
    """Train seed 003's GAN on one severity score; checkpoints in work/ are resumed after a kill."""
    input:
        train=rules.preprocess.output.train,
    output:
        generator=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/generator.pt",
        losses=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/losses.csv",
    log:
        f"{LOGS}/train_lusgan/{{dataset}}_{{label}}.log",
    benchmark:
        f"{BENCH}/train_lusgan/{{dataset}}_{{label}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:  # named as train_lusgan_job's arguments
        settings=lambda wc: train_settings(config, wc.label, "lusgan"),
        model_config=config["lusgan"]["model"],
        work_dir=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/work",
    script:
        "../scripts/train_lusgan.py"


rule generate_lusgan:
    """Sample N frames of one score: PNG files, one tensor file and a sample grid."""
    input:
        generator=rules.train_lusgan.output.generator,
    output:
        tensor=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/generated.pt",
        images=directory(f"{RESULTS}/{{dataset}}/lusgan/{{label}}/generated"),
        grid=report(
            f"{RESULTS}/{{dataset}}/lusgan/{{label}}/grid.png",
            caption="../report/generated_grid.rst",
            category="Synthetic ultrasound",
            labels={"score": "{label}"},
        ),
    log:
        f"{LOGS}/generate_lusgan/{{dataset}}_{{label}}.log",
    benchmark:
        f"{BENCH}/generate_lusgan/{{dataset}}_{{label}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        family="lusgan",
        settings=config["lusgan"]["generate"],
        device=lambda wc: train_settings(config, wc.label, "lusgan")["device"],
    script:
        "../scripts/generate_unconditional.py"


rule similarity_lusgan:
    """All-pairs similarity per score, diversity vs real, and the memorization check."""
    input:
        train=rules.preprocess.output.train,
        test=rules.preprocess.output.test,
        generated=expand(
            rules.generate_lusgan.output.tensor,
            label=config["lusgan"]["classes"],
            allow_missing=True,
        ),
    output:
        summary=f"{RESULTS}/{{dataset}}/lusgan/similarity/summary.csv",
        diversity=f"{RESULTS}/{{dataset}}/lusgan/similarity/diversity.csv",
        nearest=f"{RESULTS}/{{dataset}}/lusgan/similarity/nearest.csv",
        values=f"{RESULTS}/{{dataset}}/lusgan/similarity/values.pt",
    log:
        f"{LOGS}/similarity_lusgan/{{dataset}}.log",
    benchmark:
        f"{BENCH}/similarity_lusgan/{{dataset}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        labels=config["lusgan"]["classes"],
        settings=config["lusgan"]["similarity"],
    script:
        "../scripts/similarity_lusgan.py"
