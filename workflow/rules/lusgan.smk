rule phantom_lus:
    """Write the built-in lung-ultrasound phantom (.mat videos in both layouts, video files, score tables)."""
    output:
        directory(f"{RESULTS}/phantom_lus/{{dataset}}"),
    params:
        phantom=lambda wc: lus_phantom_settings(wc.dataset),
    conda:
        "../../envs/lungsynth.yaml"
    log:
        f"{LOGS}/phantom_lus/{{dataset}}.log",
    benchmark:
        f"{BENCH}/phantom_lus/{{dataset}}.tsv"
    script:
        "../scripts/phantom_lus.py"


rule train_lusgan:
    """Train seed 003's GAN on one severity score; checkpoints in work/ are resumed after a kill."""
    input:
        train=preprocessed("{dataset}", "train"),
    output:
        generator=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/generator.pt",
        losses=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/losses.csv",
    params:
        settings=lambda wc: train_settings(config, wc.label, "lusgan"),
        model=config["lusgan"]["model"],
        work=f"{RESULTS}/{{dataset}}/lusgan/{{label}}/work",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/lungsynth.yaml"
    log:
        f"{LOGS}/train_lusgan/{{dataset}}_{{label}}.log",
    benchmark:
        f"{BENCH}/train_lusgan/{{dataset}}_{{label}}.tsv"
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
    params:
        settings=config["lusgan"]["generate"],
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/lungsynth.yaml"
    log:
        f"{LOGS}/generate_lusgan/{{dataset}}_{{label}}.log",
    benchmark:
        f"{BENCH}/generate_lusgan/{{dataset}}_{{label}}.tsv"
    script:
        "../scripts/generate_lusgan.py"


rule similarity_lusgan:
    """All-pairs similarity per score, diversity vs real, and the memorization check."""
    input:
        train=preprocessed("{dataset}", "train"),
        test=preprocessed("{dataset}", "test"),
        generated=expand(
            f"{RESULTS}/{{{{dataset}}}}/lusgan/{{label}}/generated.pt", label=config["lusgan"]["classes"]
        ),
    output:
        summary=f"{RESULTS}/{{dataset}}/lusgan/similarity/summary.csv",
        diversity=f"{RESULTS}/{{dataset}}/lusgan/similarity/diversity.csv",
        nearest=f"{RESULTS}/{{dataset}}/lusgan/similarity/nearest.csv",
        values=f"{RESULTS}/{{dataset}}/lusgan/similarity/values.pt",
    params:
        labels=config["lusgan"]["classes"],
        settings=config["lusgan"]["similarity"],
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/lungsynth.yaml"
    log:
        f"{LOGS}/similarity_lusgan/{{dataset}}.log",
    benchmark:
        f"{BENCH}/similarity_lusgan/{{dataset}}.tsv"
    script:
        "../scripts/similarity_lusgan.py"
