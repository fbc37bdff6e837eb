rule preprocess_segmentation:
    """Slices with their label maps (lung from masks, given or derived; ground-glass; consolidation) per split."""
    input:
        manifest=rules.ingest.output.manifest,
    output:
        train=f"{RESULTS}/{{dataset}}/segmentation/train.pt",
        val=f"{RESULTS}/{{dataset}}/segmentation/val.pt",
        test=f"{RESULTS}/{{dataset}}/segmentation/test.pt",
        summary=f"{RESULTS}/{{dataset}}/segmentation/summary.json",
    log:
        f"{LOGS}/preprocess_segmentation/{{dataset}}.log",
    benchmark:
        f"{BENCH}/preprocess_segmentation/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        root=lambda wc: dataset_root(wc.dataset),
        settings=lambda wc: preprocess_settings(config, wc.dataset),
        lung_mask=config["cgan"]["lung_mask"],
        require_infection=config["cgan"]["require_infection"],
    script:
        "../scripts/preprocess_segmentation.py"


rule augment_cgan:
    """Augment map + image pairs: the training split and the synthesis-test split (seed 001 - 300 -> 12,000)."""
    input:
        train=rules.preprocess_segmentation.output.train,
        test=lambda wc: one(
            getattr(
                rules.preprocess_segmentation.output,
                config["cgan"]["synthesis_test_split"],
            ),
            dataset=wc.dataset,
        ),
    output:
        train=f"{RESULTS}/{{dataset}}/cgan/data/train_aug.pt",
        test=f"{RESULTS}/{{dataset}}/cgan/data/test_aug.pt",
    log:
        f"{LOGS}/augment_cgan/{{dataset}}.log",
    benchmark:
        f"{BENCH}/augment_cgan/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        settings=config["cgan"]["augment"],
    script:
        "../scripts/augment_cgan.py"


rule train_cgan:
    """One training step of one method (global / local / joint, or full); checkpoints in work/ resume a killed job."""
    input:
        train=rules.augment_cgan.output.train,
        init=cgan_previous_step,
    output:
        model=f"{RESULTS}/{{dataset}}/cgan/{{method}}/{{step}}/model.pt",
        losses=f"{RESULTS}/{{dataset}}/cgan/{{method}}/{{step}}/losses.csv",
    log:
        f"{LOGS}/train_cgan/{{dataset}}/{{method}}/{{step}}.log",
    benchmark:
        f"{BENCH}/train_cgan/{{dataset}}/{{method}}/{{step}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:  # named as train_cgan_step_job's arguments
        model_config=config["cgan"]["model"],
        settings=config["cgan"]["train"],
        work_dir=f"{RESULTS}/{{dataset}}/cgan/{{method}}/{{step}}/work",
    script:
        "../scripts/train_cgan.py"


rule generate_cgan:
    """Synthesise every augmented test map with one method, and the composite with the real non-lung area."""
    input:
        model=cgan_final_model,
        test=rules.augment_cgan.output.test,
    output:
        f"{RESULTS}/{{dataset}}/cgan/{{method}}/generated.pt",
    log:
        f"{LOGS}/generate_cgan/{{dataset}}/{{method}}.log",
    benchmark:
        f"{BENCH}/generate_cgan/{{dataset}}/{{method}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        settings=config["cgan"]["generate"],
        device=config["cgan"]["train"]["device"],
    script:
        "../scripts/generate_cgan.py"


rule feature_extractor:
    """Train the domain feature extractor that FID and KID use (segmentation of real training pairs)."""
    input:
        train=rules.augment_cgan.output.train,
    output:
        model=f"{RESULTS}/{{dataset}}/cgan/quality/extractor.pt",
        history=f"{RESULTS}/{{dataset}}/cgan/quality/extractor_history.csv",
    log:
        f"{LOGS}/feature_extractor/{{dataset}}.log",
    benchmark:
        f"{BENCH}/feature_extractor/{{dataset}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        settings=config["cgan"]["quality"],
        work=f"{RESULTS}/{{dataset}}/cgan/quality/extractor_work",
    script:
        "../scripts/feature_extractor.py"


rule quality_cgan:
    """Table II rows of one method: FID, KID, PSNR, SSIM, RMSE for complete and lung-only images."""
    input:
        test=rules.augment_cgan.output.test,
        generated=rules.generate_cgan.output[0],
        extractor=rules.feature_extractor.output.model,
    output:
        f"{RESULTS}/{{dataset}}/cgan/quality/{{method}}.csv",
    log:
        f"{LOGS}/quality_cgan/{{dataset}}/{{method}}.log",
    benchmark:
        f"{BENCH}/quality_cgan/{{dataset}}/{{method}}.tsv"
    conda:
        "../../envs/gan.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        settings=config["cgan"]["quality"],
    script:
        "../scripts/quality_cgan.py"


rule cgan_tables:
    """Table II / Table V (image quality) of every method in one table, and the map | real | methods figure."""
    input:
        quality=lambda wc: expand(
            rules.quality_cgan.output[0], dataset=wc.dataset, method=cgan_methods()
        ),
        generated=lambda wc: expand(
            rules.generate_cgan.output[0], dataset=wc.dataset, method=cgan_methods()
        ),
        test=rules.augment_cgan.output.test,
    output:
        table=f"{RESULTS}/{{dataset}}/cgan/table2.csv",
        cases=report(
            f"{RESULTS}/{{dataset}}/cgan/cases.png",
            caption="../report/cgan_cases.rst",
            category="Seed 001 synthesis",
        ),
    log:
        f"{LOGS}/cgan_tables/{{dataset}}.log",
    conda:
        "../../envs/report.yaml"
    params:
        methods=cgan_methods(),
        cases=config["cgan"]["generate"]["cases"],
    script:
        "../scripts/cgan_tables.py"
