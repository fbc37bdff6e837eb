"""Quality against training budget for the unconditional GANs (DCGAN, LUS GANs): where the CPU defaults sit.

Usage:
    python benchmarks/budget_curves.py dcgan RESULTS/phantom_ct  --budgets 280,560,1120 [--train JSON] [--model JSON]
    python benchmarks/budget_curves.py lusgan RESULTS/phantom_lus --budgets 150,300,450 [--train JSON] [--model JSON]

RESULTS/<dataset> is a finished run's folder (``snakemake`` with the config below): the GANs train on its
``preprocessed/train.pt``; the DCGAN is judged by its ``classifier/model.pt`` on ``preprocessed/test.pt``.
Each class trains once, to the largest budget, at ``--config``'s settings (default config/config.yaml)
updated by ``--train`` / ``--model``; the generator (the EMA copy when on, with standing statistics when
on) is sampled at every budget from the checkpoint written there. The state at step b of that run is
the state of a run of b steps (constant learning rates; the LUS critic's decay is per iteration), so
one run gives the whole curve. A single budget is a recipe check.

Printed per budget, with the cumulative training seconds (1 thread each):
- dcgan: per class, the share of 200 generated images the classifier calls positive against the real
  test images' share, and the gap (issue-14 bar: <= 0.15);
- lusgan: per score, mean generated-vs-real MS-SSIM (gvr; bar: >= 0.75 x real-vs-real) and generated
  diversity (MS-SSIM among generated; bar: <= real + 0.10), as the similarity job computes them.
Work folders go to /tmp/budget_curves/NAME_<family>_<class>.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch

from lungsynth.artifacts import torch_load
from lungsynth.config import load_config, train_settings
from lungsynth.data.preprocess import class_images, load_split
from lungsynth.engine import epoch_batches, seeded_generator
from lungsynth.methods.data_efficient import STANDING_STREAM
from lungsynth.methods.unconditional import image_grid, latent_forward, sample_generator
from lungsynth.networks.batch_norm import standing_statistics

REPO = Path(__file__).resolve().parents[1]


def family_parts(family: str):
    """(settings class, trainer, generator builder) of a family."""
    if family == "dcgan":
        from lungsynth.methods.dcgan.train import DCGANSettings, build_dcgan, train_dcgan
        return DCGANSettings, train_dcgan, lambda model, c, s: build_dcgan(model, c, s)[0]
    from lungsynth.methods.lusgan.train import LUSSettings, build_lus_generator, train_lus_gan
    return LUSSettings, train_lus_gan, build_lus_generator


def checkpoint_generator(path: Path, build, model: dict, images: torch.Tensor, settings) -> torch.nn.Module:
    """The generator a run stopped at this checkpoint would return (EMA copy, standing statistics)."""
    state = torch_load(path)
    generator = build(model, images.shape[1], images.shape[-1])
    generator.load_state_dict(state["ema"]["module"] if state.get("ema") else state["generator"])
    if settings.standing_stats:  # as DataEfficient.trained_generator at the end of a run of state["step"] steps
        run_batch = latent_forward(settings.batch_size, "cpu")
        standing_statistics(generator, lambda rng: run_batch(generator, rng), settings.standing_stats,
                            seeded_generator(settings.seed, STANDING_STREAM, state["step"]))
    return generator.eval()


def train_curve(family: str, name: str, label: str, images: torch.Tensor, config: dict, budgets: list[int],
                train_over: dict, model: dict) -> dict[int, tuple[torch.Tensor, float]]:
    """Budget -> (200 uint8 samples, cumulative training seconds) for one class."""
    settings_cls, trainer, build = family_parts(family)
    raw = train_settings(config, label, family) | train_over
    if family == "dcgan":
        _, per_epoch = epoch_batches(len(images), raw["batch_size"], "images")
        if any(b % per_epoch for b in budgets):
            raise SystemExit(f"dcgan budgets must be multiples of {per_epoch} steps per epoch for class {label}")
        raw["epochs"] = max(budgets) // per_epoch
    else:
        raw["iterations"] = max(budgets)
    raw["checkpoint_every"] = math.gcd(*budgets)
    settings = settings_cls.from_dict(raw)
    work = Path(f"/tmp/budget_curves/{name}_{family}_{label}")
    shutil.rmtree(work, ignore_errors=True)  # a finished run would resume at its end, past the budgets
    out, done, seconds = {}, 0, 0.0
    for budget in budgets:
        start = time.time()
        trainer(images, model, settings, work, progress=False, stop_after=budget - done)
        seconds += time.time() - start
        done = budget
        generator = checkpoint_generator(work / "checkpoints" / f"ckpt_{budget:09d}.pt", build, model, images,
                                         settings)
        samples = sample_generator(generator, 200, seed=1234)
        image_grid(samples, 36).save(f"{work}_grid_{budget}.png")
        out[budget] = (samples, seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("family", choices=["dcgan", "lusgan"])
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("--budgets", required=True, help="comma-separated steps (dcgan) or iterations (lusgan)")
    parser.add_argument("--train", default="{}", help="JSON overrides of <family>.train")
    parser.add_argument("--model", default="{}", help="JSON overrides of <family>.model")
    parser.add_argument("--classes", default=None, help="comma-separated classes (default: the config's)")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--name", default="run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    model = dict(config[args.family]["model"]) | json.loads(args.model)
    train_over = json.loads(args.train)
    labels = args.classes.split(",") if args.classes else [str(c) for c in config[args.family]["classes"]]
    train = load_split(args.dataset_dir / "preprocessed" / "train.pt")
    test = load_split(args.dataset_dir / "preprocessed" / "test.pt")
    curves = {label: train_curve(args.family, args.name, label, class_images(train, label), config, budgets,
                                 train_over, model) for label in labels}
    print(f"{args.name} {args.family} train {train_over} model {json.loads(args.model)}")
    if args.family == "dcgan":
        from lungsynth.methods.dcgan.score import score_sets
        from lungsynth.tasks.classifier import load_classifier
        classifier, classes, positive = load_classifier(args.dataset_dir / "classifier" / "model.pt", "cpu")
        for budget in budgets:
            generated = {label: curves[label][budget][0] for label in labels}
            _, summary = score_sets(classifier, classes, positive, generated, test, n_sets=10, set_size=20)
            share = {(r["source"], r["class"]): r["pooled_share_positive"] for _, r in summary.iterrows()}
            for label in labels:
                gap = abs(share[("synthetic", label)] - share[("real", label)])
                print(f"budget {budget:5d} {label}: synthetic {share[('synthetic', label)]:.2f} "
                      f"real {share[('real', label)]:.2f} gap {gap:.2f} {'OK' if gap <= 0.15 else '--'} "
                      f"{curves[label][budget][1]:.0f}s", flush=True)
        return
    from lungsynth.methods.lusgan.jobs import _even_sample, _per_image, ms_ssim_levels
    from lungsynth.metrics import similarity as sim
    options = {"weights": sim.ms_ssim_weights(ms_ssim_levels(int(train["images"].shape[-1])))}
    max_real = config["lusgan"]["similarity"]["max_real"]
    for label in labels:
        real = _even_sample(class_images(test, label), max_real).float() / 255
        real_vs_real = _per_image(sim.pairwise("ms_ssim", real, **options)).mean().item()
        for budget in budgets:
            fake = curves[label][budget][0][:64].float() / 255
            gvr = _per_image(sim.compare_sets(fake, real, metrics=("ms_ssim",),
                                              options={"ms_ssim": options})["ms_ssim"]).mean().item()
            diversity = _per_image(sim.pairwise("ms_ssim", fake, **options)).mean().item()
            ok = gvr >= 0.75 * real_vs_real and diversity <= real_vs_real + 0.10
            print(f"budget {budget:5d} score {label}: gvr {gvr:.2f} (bar {0.75 * real_vs_real:.2f}) "
                  f"diversity {diversity:.2f} (bar {real_vs_real + 0.10:.2f}) {'OK' if ok else '--'} "
                  f"{curves[label][budget][1]:.0f}s", flush=True)


if __name__ == "__main__":
    os.makedirs("/tmp/budget_curves", exist_ok=True)
    main()
