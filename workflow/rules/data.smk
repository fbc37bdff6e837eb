rule phantom_ct:
    """Write the built-in CT phantom (DICOM series, NIfTI volumes and masks) from a seed."""
    output:
        directory(f"{RESULTS}/phantom/{{dataset}}"),
    log:
        f"{LOGS}/phantom_ct/{{dataset}}.log",
    benchmark:
        f"{BENCH}/phantom_ct/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        phantom=lambda wc: ct_phantom_settings(wc.dataset),
    script:
        "../scripts/phantom_ct.py"


rule ingest:
    """Read every file of a dataset, validate it and write the slice manifest."""
    input:
        ingest_input,
    output:
        manifest=f"{RESULTS}/{{dataset}}/ingest/manifest.csv",
        skipped=f"{RESULTS}/{{dataset}}/ingest/skipped.csv",
        files=f"{RESULTS}/{{dataset}}/ingest/files.csv",
    log:
        f"{LOGS}/ingest/{{dataset}}.log",
    benchmark:
        f"{BENCH}/ingest/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        root=lambda wc: dataset_root(wc.dataset),
        spec=lambda wc: ingest_spec(wc.dataset),
        content=ingest_content,
    script:
        "../scripts/ingest.py"


rule preprocess:
    """Window/normalise, convert, resize and cache slices as uint8 tensors per split."""
    input:
        manifest=rules.ingest.output.manifest,
        files=rules.ingest.output.files,  # how each .mat was read; frames reload the same way
    output:
        train=f"{RESULTS}/{{dataset}}/preprocessed/train.pt",
        val=f"{RESULTS}/{{dataset}}/preprocessed/val.pt",
        test=f"{RESULTS}/{{dataset}}/preprocessed/test.pt",
        summary=f"{RESULTS}/{{dataset}}/preprocessed/summary.json",
    log:
        f"{LOGS}/preprocess/{{dataset}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        root=lambda wc: dataset_root(wc.dataset),
        settings=lambda wc: preprocess_settings(config, wc.dataset),
    script:
        "../scripts/preprocess.py"
