# Sample one class's trained generator of a per-class unconditional family: params.family names it (dcgan | lusgan).
from lungsynth.engine import select_device
from lungsynth.methods.dcgan.train import load_generator
from lungsynth.methods.lusgan.train import load_lus_generator
from lungsynth.methods.unconditional import generate_images
from lungsynth.runlog import job_log

LOADER = {"dcgan": load_generator, "lusgan": load_lus_generator}

with job_log(snakemake.log[0], snakemake.threads):
    s = snakemake.params.settings
    generate_images(
        snakemake.input.generator,
        n_images=s["n_images"],
        seed=s["seed"],
        grid=s["grid"],
        tensor_path=snakemake.output.tensor,
        image_dir=snakemake.output.images,
        grid_path=snakemake.output.grid,
        device=select_device(snakemake.params.device),
        loader=LOADER[snakemake.params.family],
    )
