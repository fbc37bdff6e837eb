"""Training and synthesis throughput (images per second) of each conditional GAN, measured in one run.

Builds every method of ``cgan.methods`` (and ``cgan.variants``) from a config, times
``--iterations`` training iterations of its last step (for global-local methods the
joint step, the most expensive) on random label maps, and the synthesis of
``--synth`` maps, then prints images/s per method and the ratio to Pix2pix (the
baseline: the smallest generator). On a GPU it uses CUDA with bf16 autocast and
channels-last, as the workflow does (``cgan.train.amp``, ``channels_last``).

    python benchmarks/cgan_throughput.py --config config/config.yaml --size 64
    python benchmarks/cgan_throughput.py --config config/paper/cgan_seed001.yaml --size 256 --batch 16
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from lungsynth.config import load_config, preprocess_settings
from lungsynth.engine import select_device
from lungsynth.methods.cgan.train import build_networks, CGANSettings, method_steps, synthesise, train_cgan_step
from lungsynth.methods.cgan.specs import method_spec


def random_pairs(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blob-shaped label maps (two lungs with lesions) and noisy images: enough for timing."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    labels = torch.zeros(n, size, size, dtype=torch.uint8)
    for cx in (-0.45, 0.45):
        labels[:, ((xx - cx) / 0.3) ** 2 + (yy / 0.6) ** 2 < 1] = 1
    shift = torch.rand(n, 1, 1, generator=g) * 0.6 - 0.3
    lesion = ((xx - 0.45 - shift * 0.2) / 0.12) ** 2 + ((yy - shift) / 0.15) ** 2 < 1
    labels[lesion & (labels == 1)] = 2
    images = (labels.float() * 50 + torch.rand(n, size, size, generator=g) * 40).to(torch.uint8)[:, None]
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--size", type=int, default=None, help="image size (default: the cgan dataset's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: cgan.train.batch_size)")
    parser.add_argument("--iterations", type=int, default=20, help="timed training iterations per method")
    parser.add_argument("--synth", type=int, default=256, help="maps synthesised per method")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    cgan = config["cgan"]
    size = args.size or preprocess_settings(config, cgan["dataset"])["size"]
    batch = args.batch or cgan["train"]["batch_size"]
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; size {size}; batch {batch}; config {args.config}")
    warmup = 3
    n_iter = warmup + args.iterations
    images, labels = random_pairs(batch * n_iter, size)
    settings = CGANSettings.from_dict({**cgan["train"], "epochs": 1, "decay_epochs": 0, "batch_size": batch,
                                       "checkpoint_every": 10**9, "device": str(device.type)})
    rows = []
    for method in list(cgan["methods"]) + list(cgan["variants"]):
        spec = method_spec(method, cgan["model"])
        step = method_steps(spec)[-1]
        with tempfile.TemporaryDirectory() as work:
            # the warm-up iterations run first in the same process (allocator, cuDNN autotune); then time the rest
            train_cgan_step(images[: batch * warmup], labels[: batch * warmup], spec, settings, step, f"{work}/w",
                            progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_cgan_step(images[: batch * args.iterations], labels[: batch * args.iterations], spec, settings, step,
                            f"{work}/t", progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_ips = batch * args.iterations / (time.perf_counter() - start)
        generator = build_networks(spec, 1, size)["generator"].to(device).eval()
        synth_images, synth_labels = random_pairs(args.synth, size, seed=1)
        synthesise(generator, spec, synth_labels[:batch], synth_images[:batch], batch_size=batch, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        synthesise(generator, spec, synth_labels, synth_images, batch_size=32, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        synth_ips = args.synth / (time.perf_counter() - start)
        params = sum(p.numel() for p in generator.parameters())
        rows.append((method, step, params, train_ips, synth_ips))
        print(f"  {method:12s} step {step:6s} G {params / 1e6:7.2f} M  train {train_ips:8.1f} img/s  "
              f"synthesis {synth_ips:8.1f} img/s", flush=True)
    base = {r[0]: r for r in rows}.get("pix2pix")
    print("\nmethod        G params   train img/s   synthesis img/s   (ratio to pix2pix)")
    for method, step, params, train_ips, synth_ips in rows:
        ratio = f"  ({train_ips / base[3]:.2f}x, {synth_ips / base[4]:.2f}x)" if base else ""
        print(f"{method:12s} {params / 1e6:8.2f} M {train_ips:12.1f} {synth_ips:16.1f}{ratio}")


if __name__ == "__main__":
    main()
