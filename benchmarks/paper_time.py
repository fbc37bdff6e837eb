"""Estimated GPU time of each paper config (``config/paper/*.yaml``) run end to end, per rule.

For each config: the GPU jobs the workflow runs (the job lists of ``workflow/rules/common.smk``:
one ``train_dcgan`` per class, ``cgan_methods()`` x ``cgan_steps()``, ``unet_cells()``,
``classifier_cells()``, ...; the method list, U-Net cells and study shares come from the same package
functions the workflow calls), the optimizer steps of each job as the training code counts them,
the FLOPs of one step, and the hours at an assumed sustained throughput, on one GPU, one job
after another (``--resources gpu=1``).

Method
  1. Settings: ``lungsynth.config.load_config(path)``: the file validated, schema defaults
     filled (what ``snakemake --replace-workflow-config --configfile path`` runs; a plain
     ``--configfile`` merges the file over ``config/config.yaml``, checked in a note per config).
     Per-class overrides via ``train_settings``, image size via ``preprocess_settings``.
  2. Steps per job, as the training functions count them: DCGAN and DenseNet-169
     ``epochs * (n // batch)``; LUS GAN ``iterations`` (one iteration = 1 critic +
     ``g_steps_per_d`` generator updates); each cGAN training step (global / local / joint, or
     full) ``(epochs + decay_epochs) * (n // batch)`` (one iteration = 1 D + 1 G update);
     U-Net cell and feature extractor ``epochs * (n // batch)``. A U-Net cell trains one U-Net;
     its folds only split the fixed test set. Sizes the configs do not give are options.
  3. FLOPs: every network is built at the config's size on the meta device (shapes only; the
     CPU if an op has no meta kernel) and one forward pass on a probe batch is counted with
     ``torch.utils.flop_counter.FlopCounterMode`` (conv and matmul FLOPs, 2 per
     multiply-accumulate; norms, activations, resampling, losses and the optimizer are not
     counted), divided by the probe batch and scaled linearly by the batch size. A step is a sum
     of forward-pass equivalents per network: forward 1; backward 2 (input and weight gradients,
     counted even where the input needs none, so slightly high); backward through a frozen
     network 1 (input gradients only). The factors of each step are in the ``plan_*`` functions.
  4. Time: FLOPs / (``--tflops`` x 1e12) for training steps under bf16 autocast
     (``train.amp``); default 100 TFLOP/s, about 10% of the dense bf16 peak of one H100/H200,
     typical of small-batch convolutional GANs. fp32 work (the DenseNet-169 and the feature
     extractor train without autocast; all inference runs without it) at ``--fp32-ratio``
     (default 0.5: TF32 convolutions peak at half the bf16 rate) of that. A training step takes
     at least its eager-mode launch time: aten ops dispatched per forward (counted with the
     FLOPs, views excluded) x the same pass factors x ``--op-us`` (default 10 us per op; 0
     turns it off). That bound, not the FLOPs, sets small-batch deep networks (DenseNet-169 at
     batch 10: 771 ops per forward) and small ones (the feature extractor).
     ``--measure`` instead times real optimizer steps of each distinct training job with its
     own training function on random data on the available device (CUDA when present): after
     an untimed warm-up run, (T(1 + k) - T(1)) / k, so set-up and the final checkpoint cancel.
     Forward-only work stays on the FLOP model. At paper sizes it needs a GPU; on a CPU use it
     only as a sanity check with a small config (``--configs config/config.yaml``).

    PYTHONPATH=src .venv/bin/python benchmarks/paper_time.py
    PYTHONPATH=src .venv/bin/python benchmarks/paper_time.py --detail --tflops 150
    PYTHONPATH=src .venv/bin/python benchmarks/paper_time.py --measure            # on a GPU
    PYTHONPATH=src .venv/bin/python benchmarks/paper_time.py --measure --configs config/config.yaml  # CPU sanity
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from lungsynth.studies.design import study_ratios, unet_study_cells
from lungsynth.methods.cgan.specs import configured_methods
from lungsynth.tasks.classifier import train_classifier
from lungsynth.config import load_config, load_schema, preprocess_settings, train_settings, validate_config
from lungsynth.errors import ConfigError
from lungsynth.networks.densenet import DenseNetClassifier
from lungsynth.networks.unet import UNet
from lungsynth.networks.feature_extractor import DomainFeatureExtractor
from lungsynth.tasks.feature_extractor import train_feature_extractor
from lungsynth.data.segmentation import N_LABELS
from lungsynth.tasks.segmentation import N_CLASSES, UNetSettings, train_unet
from lungsynth.methods.dcgan.train import build_dcgan, DCGANSettings, train_dcgan
from lungsynth.engine import select_device
from lungsynth.methods.cgan.train import build_networks, CGANSettings, method_steps, scale_weights, train_cgan_step
from lungsynth.methods.cgan.specs import method_spec
from lungsynth.methods.lusgan.train import LUSSettings, build_lus_gan, train_lus_gan

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
COVID_CT_COUNTS = "covid=349,noncovid=397"  # COVID-CT v1 (UCSD-AI4H), all slices of both classes
LUS_FRAMES = 48  # = seed 003's batch size; the cost is the same for any count >= batch_size
CGAN_IMAGE_CHANNELS = 1  # the segmentation branch keeps grayscale slices (segdata)
FEATURE_EXTRACTOR_BATCH = 32  # train_feature_extractor's default; feature_extractor_job keeps it
BRANCHES = ("dcgan", "lusgan", "cgan", "ablation.segmentation", "ablation.classifier")


# ----------------------------------------------------------------------------- networks and FLOPs


@dataclass(frozen=True)
class Network:
    """A network at the config's size and how to run one forward pass on a probe batch.

    ``make_forward`` builds the network and its probe input and returns a zero-argument
    callable running the forward pass; ``samples`` is the probe batch size.
    """

    key: str
    samples: int
    make_forward: Callable[[], Callable[[], object]] = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Term:
    """``passes`` forward-pass equivalents of ``network`` on each of ``samples`` samples."""

    network: Network
    passes: float
    samples: int


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops a forward pass dispatches, views excluded: eager mode's kernel launches."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view
        return func(*args, **(kwargs or {}))


class NetworkCache:
    """Forward FLOPs per sample and ops per call of each network, counted once per key."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[float, int]] = {}

    def _count(self, network: Network) -> tuple[float, int]:
        if network.key not in self._counts:
            try:
                self._counts[network.key] = _count_forward(network, "meta")
            except (NotImplementedError, RuntimeError):
                self._counts[network.key] = _count_forward(network, "cpu")
        return self._counts[network.key]

    def per_sample(self, network: Network) -> float:
        """Forward FLOPs of one sample (conv + matmul, 2 per multiply-accumulate)."""
        return self._count(network)[0]

    def ops(self, network: Network) -> int:
        """Aten ops (views excluded) of one forward call, whatever its batch size."""
        return self._count(network)[1]

    def flops(self, terms: Sequence[Term]) -> float:
        """FLOPs of a sum of terms."""
        return sum(t.passes * t.samples * self.per_sample(t.network) for t in terms)

    def launches(self, terms: Sequence[Term]) -> float:
        """Ops of one step: each term's passes x its network's ops per call (independent of batch)."""
        return sum(t.passes * self.ops(t.network) for t in terms)


def _count_forward(network: Network, device: str) -> tuple[float, int]:
    """Count one forward pass of ``network`` built on ``device``: (FLOPs per sample, ops)."""
    with torch.device(device):
        forward = network.make_forward()
        with torch.no_grad(), FlopCounterMode(display=False) as counter, _OpCounter() as ops:
            forward()
    return counter.get_total_flops() / network.samples, ops.ops


def _key(*parts: object) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def dcgan_networks(model: dict, channels: int, size: int) -> tuple[Network, Network]:
    """Seed 000's generator (probe: z ``(1, latent_dim)``) and discriminator (probe: ``(1, C, S, S)``)."""

    def generator() -> Callable[[], object]:
        net, z = build_dcgan(model, channels, size)[0].eval(), torch.zeros(1, model["latent_dim"])
        return lambda: net(z)

    def discriminator() -> Callable[[], object]:
        net, x = build_dcgan(model, channels, size)[1].eval(), torch.zeros(1, channels, size, size)
        return lambda: net(x)

    key = _key("dcgan", model, channels, size)
    return Network(key + "G", 1, generator), Network(key + "D", 1, discriminator)


def densenet_network(n_classes: int, channels: int, size: int) -> Network:
    """The DenseNet-169 classifier (probe: ``(1, C, S, S)``)."""

    def forward() -> Callable[[], object]:
        net, x = DenseNetClassifier(num_classes=n_classes).eval(), torch.zeros(1, channels, size, size)
        return lambda: net(x)

    return Network(_key("densenet169", n_classes, channels, size), 1, forward)


def lus_networks(model: dict, channels: int, size: int) -> tuple[Network, Network]:
    """Seed 003's generator (probe: z ``(1, latent_dim)``) and PACGAN critic (probe: one pack of samples)."""
    pack = int(model.get("pack", 2))

    def generator() -> Callable[[], object]:
        net, z = build_lus_gan(model, channels, size)[0].eval(), torch.zeros(1, model["latent_dim"])
        return lambda: net(z)

    def critic() -> Callable[[], object]:
        net, x = build_lus_gan(model, channels, size)[1].eval(), torch.zeros(pack, channels, size, size)
        return lambda: net(x)

    key = _key("lusgan", model, channels, size)
    return Network(key + "G", 1, generator), Network(key + "D", pack, critic)


def _probe_maps(size: int) -> torch.Tensor:
    """One-hot label map ``(1, N_LABELS, size, size)`` (all lung)."""
    maps = torch.zeros(1, N_LABELS, size, size)
    maps[:, 1] = 1
    return maps


def cgan_generator(spec: dict, size: int, mode: str) -> Network:
    """A cGAN generator: ``mode`` full (the full forward; SEAN with its style encoder) or global (G1 alone, step 1)."""

    def forward() -> Callable[[], object]:
        net = build_networks(spec, CGAN_IMAGE_CHANNELS, size)["generator"].eval()
        maps, real = _probe_maps(size), torch.zeros(1, CGAN_IMAGE_CHANNELS, size, size)
        if mode == "global":
            return lambda: net.forward_global(maps)
        if spec["family"] == "sean":
            return lambda: net(maps, net.encode_styles(real, maps))
        return lambda: net(maps)

    return Network(_key("cgan-G", spec, size, mode), 1, forward)


def cgan_discriminator(spec: dict, size: int, resolution: int) -> Network:
    """The (multiscale) discriminator of a spec on map + image at ``resolution`` px."""
    arch = {k: spec[k] for k in ("d_width", "d_layers", "n_scales", "d_norm", "spectral")} | {
        "pix2pix_padding": spec["family"] == "pix2pix"}

    def forward() -> Callable[[], object]:
        net = build_networks(spec, CGAN_IMAGE_CHANNELS, size)["discriminator"].eval()
        x = torch.zeros(1, N_LABELS + CGAN_IMAGE_CHANNELS, resolution, resolution)
        return lambda: net(x)

    return Network(_key("cgan-D", arch, resolution), 1, forward)


def cgan_dfm(spec: dict, size: int, resolution: int) -> Network:
    """Seed 001's DFM net on the discriminator feature it observes at ``resolution`` px."""

    def forward() -> Callable[[], object]:
        nets = build_networks(spec, CGAN_IMAGE_CHANNELS, size)
        d_out = nets["discriminator"].eval()(torch.zeros(1, N_LABELS + CGAN_IMAGE_CHANNELS, resolution, resolution))
        return lambda: scale_weights(spec, nets["dfm"].eval(), d_out)

    return Network(_key("cgan-DFM", spec, size, resolution), 1, forward)


def extractor_network(width: int, size: int, features_only: bool) -> Network:
    """The domain feature extractor of FID/KID: training forward (label logits) or ``features`` (quality)."""

    def forward() -> Callable[[], object]:
        net = DomainFeatureExtractor(in_channels=CGAN_IMAGE_CHANNELS, width=width, n_labels=N_LABELS).eval()
        x = torch.zeros(1, CGAN_IMAGE_CHANNELS, size, size)
        return (lambda: net.features(x)) if features_only else (lambda: net(x))

    return Network(_key("extractor", width, size, features_only), 1, forward)


def unet_network(model: dict, size: int) -> Network:
    """The U-Net of the segmentation study (probe: ``(1, 1, S, S)``)."""

    def forward() -> Callable[[], object]:
        net = UNet(CGAN_IMAGE_CHANNELS, N_CLASSES, width=model["width"], depth=model["depth"]).eval()
        x = torch.zeros(1, CGAN_IMAGE_CHANNELS, size, size)
        return lambda: net(x)

    return Network(_key("unet", model, size), 1, forward)


# ----------------------------------------------------------------------------- jobs


@dataclass
class JobGroup:
    """Jobs of one rule with equal cost.

    ``steps``: optimizer steps (iterations) per job, 0 for forward-only jobs; ``step_work``:
    the terms of one step; ``amp``: the step runs under bf16 autocast; ``forward_work``:
    forward-only work per job (always fp32 in this code base); ``measure(k)`` trains ``k``
    steps with the job's own training function on random data (``--measure``).
    """

    rule: str
    detail: str
    jobs: int
    steps: int = 0
    batch: int = 0
    step_work: tuple[Term, ...] = ()
    amp: bool = False
    forward_work: tuple[Term, ...] = ()
    measure: Callable[[int], None] | None = field(default=None, repr=False)

    @property
    def measure_key(self) -> str:
        """Identity of the step for ``--measure``: its terms, batch and precision (equal steps are timed once)."""
        return _key([(t.network.key, t.passes) for t in self.step_work], self.batch, self.amp)

    def signature(self) -> tuple:
        """What the job list says about this group (rule, detail, jobs, steps, batch)."""
        return self.rule, self.detail, self.jobs, self.steps, self.batch


@dataclass
class DataSizes:
    """Dataset sizes the configs cannot give (the paper data are not shipped)."""

    class_counts: dict[str, int]  # slices per class of an image_folder/dicom dataset, before the split
    lus_frames: int  # frames per severity score of a lus_mat/lus_video dataset, before the split


def dataset_class_totals(spec: dict, sizes: DataSizes) -> dict[str, int]:
    """Slices (frames) per class of a dataset, before the split."""
    fmt = spec["format"]
    if fmt == "phantom_ct":
        ph = spec["phantom"]
        n_covid = min(max(round(ph["n_patients"] * ph["covid_fraction"]), 1), ph["n_patients"] - 1)
        return {"covid": n_covid * ph["slices_per_patient"],
                "noncovid": (ph["n_patients"] - n_covid) * ph["slices_per_patient"]}
    if fmt == "phantom_lus":  # scores are spread evenly over the videos
        ph = spec["phantom"]
        return {s: ph["n_patients"] * ph["areas_per_patient"] * ph["frames"] // 4 for s in ("0", "1", "2", "3")}
    if fmt in ("lus_mat", "lus_video"):
        return {str(s): sizes.lus_frames for s in spec["scores"]}
    if fmt in ("image_folder", "dicom"):
        missing = [c for c in spec["classes"] if c not in sizes.class_counts]
        if missing:
            raise SystemExit(f"no slice count for class(es) {missing}: pass --class-counts")
        return {c: sizes.class_counts[c] for c in spec["classes"]}
    raise SystemExit(f"no class counts known for dataset format {fmt}")


def split_counts(config: dict, dataset: str, sizes: DataSizes) -> dict[str, dict[str, int]]:
    """Split -> class -> slices, ``round(fraction x class total)`` (the patient-level split is close to it)."""
    spec = config["datasets"][dataset]
    fractions = spec["split"]["fractions"]
    totals = dataset_class_totals(spec, sizes)
    return {split: {c: round(fractions[split] * n) for c, n in totals.items()} for split in ("train", "val", "test")}


def _settings(cls: type, values: dict) -> object:
    """A settings dataclass from the keys of ``values`` that are its fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def _random_images(n: int, channels: int, size: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


def _random_labels(n: int, size: int) -> torch.Tensor:
    return torch.randint(0, N_LABELS, (n, size, size), dtype=torch.uint8)


def plan_dcgan(config: dict, sizes: DataSizes) -> list[JobGroup]:
    """train_dcgan per class, generate_dcgan, train_classifier, score_dcgan (seed 000)."""
    dcgan = config["dcgan"]
    pre = preprocess_settings(config, dcgan["dataset"])
    channels, size = pre["channels"], pre["size"]
    generator, discriminator = dcgan_networks(dcgan["model"], channels, size)
    train = split_counts(config, dcgan["dataset"], sizes)["train"]
    groups = []
    for label in dcgan["classes"]:
        settings = train_settings(config, label)
        n = train[label]
        batch = min(settings["batch_size"], n)

        def measure(k: int, settings: dict = settings, batch: int = batch) -> None:
            with tempfile.TemporaryDirectory() as work:
                s = _settings(DCGANSettings, {**settings, "epochs": k, "checkpoint_every": 10**9})
                train_dcgan(_random_images(batch, channels, size), dcgan["model"], s, work, progress=False)

        # D step: D on real + D on G(z).detach(): 2 D forwards, backward 2 x 2; G(z) forward 1.
        # G step: D on G(z): forward 1, backward 2 (D's weight gradients are computed too), G backward 2.
        groups.append(JobGroup("train_dcgan", f"class {label}, {n} images", 1,
                               settings["epochs"] * max(1, n // batch), batch,
                               (Term(generator, 3, batch), Term(discriminator, 9, batch)), settings["amp"],
                               measure=measure))
    n_images = dcgan["generate"]["n_images"]
    groups.append(JobGroup("generate_dcgan", f"{n_images} images per class", len(dcgan["classes"]),
                           forward_work=(Term(generator, 1, n_images),)))
    groups += plan_classifier(config, sizes)
    return groups


def _classifier_group(rule: str, detail: str, jobs: int, config: dict, dataset: str, n_train: int,
                      splits: dict[str, dict[str, int]]) -> JobGroup:
    """One DenseNet-169 training (train_classifier, classifier_cell) on ``n_train`` images."""
    settings = config["classifier"]
    pre = preprocess_settings(config, dataset)
    channels, size = pre["channels"], pre["size"]
    classes = sorted(splits["train"])
    network = densenet_network(len(classes), channels, size)
    batch = min(settings["batch_size"], n_train)
    n_val, n_test = sum(splits["val"].values()), sum(splits["test"].values())

    def measure(k: int) -> None:
        images = _random_images(batch, channels, size)
        labels = torch.arange(batch) % len(classes)
        empty = {"images": images[:0], "labels": labels[:0], "classes": classes}
        train_classifier({"images": images, "labels": labels, "classes": classes}, empty,
                         positive_class=settings["positive_class"], epochs=k, batch_size=batch, lr=settings["lr"],
                         crop_scale=tuple(settings["crop_scale"]), device=settings["device"], progress=False)

    # Step: forward 1 + backward 2, fp32 (no autocast). Every epoch recalibrate_batchnorm runs all
    # training images forward again: about 1 more forward per image, counted in the step (as --measure sees it).
    # Per job: the validation split forward every epoch, the test split once.
    return JobGroup(rule, detail, jobs, settings["epochs"] * max(1, n_train // batch), batch,
                    (Term(network, 4, batch),), False,
                    (Term(network, 1, settings["epochs"] * n_val), Term(network, 1, n_test)),
                    measure)


def plan_classifier(config: dict, sizes: DataSizes) -> list[JobGroup]:
    """train_classifier, score_dcgan and the classifier study's cells (seed 000's DenseNet-169)."""
    dataset = config["classifier"]["dataset"] or config["dcgan"]["dataset"]
    splits = split_counts(config, dataset, sizes)
    n_train = sum(splits["train"].values())
    groups = [_classifier_group("train_classifier", f"{n_train} real images", 1, config, dataset, n_train, splits)]
    pre = preprocess_settings(config, dataset)
    network = densenet_network(len(splits["train"]), pre["channels"], pre["size"])
    score = config["score"]
    labels = config["dcgan"]["classes"]
    n_scored = len(labels) * score["n_sets"] * score["set_size"] + sum(splits["test"].get(c, 0) for c in labels)
    groups.append(JobGroup("score_dcgan", f"{n_scored} images", 1, forward_work=(Term(network, 1, n_scored),)))
    study = config["ablation"]["classifier"]
    if not study["enabled"]:
        return groups
    for ratio in study_ratios(study):
        # common.smk classifier_cells() less the real-only cell of classifier.seed (train_classifier's, reused)
        seeds = [s for s in study["seeds"] if not (ratio == 0 and s == config["classifier"]["seed"])]
        n = n_train + sum(round(ratio * splits["train"][c]) for c in splits["train"] if c in labels)
        if seeds:
            groups.append(_classifier_group("classifier_cell", f"r{ratio:.2f}, {n} images", len(seeds), config,
                                            dataset, n, splits))
    return groups


def plan_lusgan(config: dict, sizes: DataSizes) -> list[JobGroup]:
    """train_lusgan and generate_lusgan per severity score (seed 003)."""
    lus = config["lusgan"]
    pre = preprocess_settings(config, lus["dataset"])
    channels, size = pre["channels"], pre["size"]
    model = lus["model"]
    pack = int(model["pack"])
    generator, critic = lus_networks(model, channels, size)
    train = split_counts(config, lus["dataset"], sizes)["train"]
    groups = []
    for label in lus["classes"]:
        settings = train_settings(config, label, "lusgan")
        n = train[label]
        batch = min(settings["batch_size"], n) // pack * pack
        g = settings["g_steps_per_d"]

        def measure(k: int, settings: dict = settings, batch: int = batch) -> None:
            values = {**settings, "iterations": k, "batch_size": batch, "checkpoint_every": 10**9,
                      "betas": (settings["beta1"], settings["beta2"])}
            with tempfile.TemporaryDirectory() as work:
                train_lus_gan(_random_images(batch, channels, size), model, _settings(LUSSettings, values), work,
                              progress=False)

        # Critic step: G(z) under no_grad 1; critic on real + fake: forward 2, backward 2 x 2.
        # Each of the g generator steps: critic on a real batch under no_grad 1, G(z) 1, critic on it 1,
        # backward through the frozen critic 1 (input gradients only), G backward 2.
        groups.append(JobGroup("train_lusgan", f"score {label}, {n} frames", 1, settings["iterations"], batch,
                               (Term(generator, 1 + 3 * g, batch), Term(critic, 6 + 3 * g, batch)), settings["amp"],
                               measure=measure))
    n_images = lus["generate"]["n_images"]
    groups.append(JobGroup("generate_lusgan", f"{n_images} images per score", len(lus["classes"]),
                           forward_work=(Term(generator, 1, n_images),)))
    return groups


def cgan_methods(config: dict) -> list[str]:
    """Methods and Table V variants of the conditional-GAN branch (the workflow's list)."""
    return configured_methods(config["cgan"])


def plan_cgan(config: dict) -> list[JobGroup]:
    """train_cgan per method and step, generate_cgan, feature_extractor, quality_cgan (seed 001)."""
    cgan = config["cgan"]
    size = preprocess_settings(config, cgan["dataset"])["size"]
    settings = cgan["train"]
    n_train, n_test = cgan["augment"]["train_count"], cgan["augment"]["test_count"]
    batch = min(settings["batch_size"], n_train)
    iterations = (settings["epochs"] + settings["decay_epochs"]) * max(1, n_train // batch)
    groups = []
    for method in cgan_methods(config):
        spec = method_spec(method, cgan["model"])
        full = cgan_generator(spec, size, "full")
        for step in method_steps(spec):
            if step == "global":  # G1 alone at 1 / 2**n_local of the size, D on maps and images downsampled alike
                resolution = size // 2 ** spec["n_local"]
                g_terms = (Term(cgan_generator(spec, size, "global"), 3, batch),)
            elif step == "local":  # frozen G1 forward 1 (no graph), the enhancers forward 1 + backward 2
                resolution = size
                g_terms = (Term(full, 3, batch), Term(cgan_generator(spec, size, "global"), -2, batch))
            else:  # joint / full: the whole generator forward 1 + backward 2
                resolution = size
                g_terms = (Term(full, 3, batch),)
            # D step: D on real and on fake.detach(): forward 2, backward 2 x 2. G step: D on fake:
            # forward 1, backward 2 (D's weight gradients are computed too). DFM net (seed 001):
            # forward + backward in the D step (3), forward in the G step (1).
            d_terms = (Term(cgan_discriminator(spec, size, resolution), 9, batch),)
            if spec["dfm"] == "dynamic":
                d_terms += (Term(cgan_dfm(spec, size, resolution), 4, batch),)

            def measure(k: int, spec: dict = spec, step: str = step) -> None:
                s = CGANSettings.from_dict({**settings, "epochs": k, "decay_epochs": 0, "batch_size": batch,
                                            "checkpoint_every": 10**9})
                with tempfile.TemporaryDirectory() as work:
                    train_cgan_step(_random_images(batch, CGAN_IMAGE_CHANNELS, size), _random_labels(batch, size),
                                    spec, s, step, work, progress=False)

            groups.append(JobGroup("train_cgan", f"{method} {step}", 1, iterations, batch, g_terms + d_terms,
                                   settings["amp"], measure=measure))
    for method in cgan_methods(config):
        groups.append(JobGroup("generate_cgan", f"{method}, {n_test} maps", 1,
                               forward_work=(Term(cgan_generator(method_spec(method, cgan["model"]), size, "full"), 1,
                                                  n_test),)))
    quality = cgan["quality"]
    width = quality["extractor_width"]
    x_batch = min(FEATURE_EXTRACTOR_BATCH, n_train)

    def measure_extractor(k: int) -> None:
        train_feature_extractor(_random_images(x_batch, CGAN_IMAGE_CHANNELS, size), _random_labels(x_batch, size),
                                width=width, epochs=k, batch_size=x_batch, device=quality["device"], progress=False)

    # fp32 (no autocast): forward 1 + backward 2.
    groups.append(JobGroup("feature_extractor", f"{n_train} pairs", 1,
                           quality["extractor_epochs"] * max(1, n_train // x_batch), x_batch,
                           (Term(extractor_network(width, size, False), 3, x_batch),), False,
                           measure=measure_extractor))
    # Features of real and synthetic images, complete and lung-only: 4 forwards per test map.
    groups.append(JobGroup("quality_cgan", f"4 x {n_test} feature passes", len(cgan_methods(config)),
                           forward_work=(Term(extractor_network(width, size, True), 1, 4 * n_test),)))
    return groups


def unet_cells(config: dict) -> list[tuple[str, str, float, int]]:
    """(mode, method, ratio, seed) of every U-Net cell (the workflow's list)."""
    return unet_study_cells(config["ablation"]["segmentation"], cgan_methods(config))


def describe_cells(cells: Sequence[tuple[str, str, float, int]], method: str) -> str:
    """E.g. ``real only x3, replace r0.10-r0.50 x15, 14 other methods at replace r0.50 x42``."""
    parts = []
    real = [c for c in cells if c[0] == "real"]
    if real:
        parts.append(f"real only x{len(real)}")
    for mode in ("replace", "add"):
        own = [c for c in cells if c[0] == mode and c[1] == method]
        if own:
            parts.append(f"{mode} {_span([c[2] for c in own], lambda r: f'r{r:.2f}')} x{len(own)}")
    others = [c for c in cells if c[1] not in (method, "none")]
    if others:
        parts.append(f"{len({c[1] for c in others})} other methods at replace "
                     f"{_span([c[2] for c in others], lambda r: f'r{r:.2f}')} x{len(others)}")
    return ", ".join(parts)


def plan_unet(config: dict) -> list[JobGroup]:
    """unet_cell jobs (seed 001's Tables III/IV), grouped by training-set size."""
    seg = config["ablation"]["segmentation"]
    size = preprocess_settings(config, config["cgan"]["dataset"])["size"]
    network = unet_network(seg["model"], size)
    settings = UNetSettings.from_dict(seg["train"])
    n_real = config["cgan"]["augment"]["test_count"]  # a cell trains on the augmented synthesis-test split
    n_test = seg["test_count"]
    by_size: dict[int, list[tuple[str, str, float, int]]] = {}
    for cell in unet_cells(config):
        mode, _, ratio, _ = cell
        # compose_training_set: replace keeps n_real slices, add puts round(ratio x n_real) synthetic ones on top
        by_size.setdefault(n_real + round(ratio * n_real) if mode == "add" else n_real, []).append(cell)
    groups = []
    for n, cells in by_size.items():
        batch = min(settings.batch_size, n)

        def measure(k: int, batch: int = batch) -> None:
            s = dataclasses.replace(settings, epochs=k, batch_size=batch, checkpoint_every=10**9)
            with tempfile.TemporaryDirectory() as work:
                train_unet(_random_images(batch, CGAN_IMAGE_CHANNELS, size), _random_labels(batch, size), seg["model"],
                           s, work, progress=False)

        # Step: forward 1 + backward 2 (autocast per settings.amp). Per job, fp32: recalibrate_batchnorm
        # runs the n training slices forward once, and the n_test test slices are predicted once.
        groups.append(JobGroup("unet_cell", f"{describe_cells(cells, seg['method'])}; {n} slices", len(cells),
                               settings.epochs * max(1, n // batch), batch, (Term(network, 3, batch),), settings.amp,
                               (Term(network, 1, n), Term(network, 1, n_test)), measure))
    return groups


def plan(config: dict, sizes: DataSizes) -> list[JobGroup]:
    """Every GPU job group of a validated config. CPU-only rules (ingest, preprocess, augmentation,
    tables, report) and the non-network similarity_lusgan are left out."""
    groups = []
    if config["dcgan"]["enabled"]:
        groups += plan_dcgan(config, sizes)
    if config["lusgan"]["enabled"]:
        groups += plan_lusgan(config, sizes)
    if config["cgan"]["enabled"]:
        groups += plan_cgan(config)
    if config["ablation"]["segmentation"]["enabled"]:
        groups += plan_unet(config)
    return groups


# ----------------------------------------------------------------------------- time


@dataclass
class Throughput:
    """Assumed sustained throughput: ``tflops`` under bf16 autocast, ``fp32_ratio`` of it without;
    ``op_us`` microseconds per eager op (the floor of a training step)."""

    tflops: float
    fp32_ratio: float
    op_us: float

    def seconds(self, flops: float, amp: bool) -> float:
        """Seconds for ``flops`` FLOPs."""
        return flops / (self.tflops * 1e12 * (1.0 if amp else self.fp32_ratio))


@dataclass
class GroupCost:
    """A job group with its FLOPs and time: ``step_flops`` per step, ``forward_flops`` per job, seconds per step;
    ``bound``: what sets the step time (FLOPs, ops = eager launch floor, or measured)."""

    group: JobGroup
    step_flops: float
    forward_flops: float
    step_seconds: float
    forward_seconds: float
    bound: str

    @property
    def job_hours(self) -> float:
        """GPU hours of one job."""
        return (self.group.steps * self.step_seconds + self.forward_seconds) / 3600

    @property
    def hours(self) -> float:
        """GPU hours of all jobs of the group."""
        return self.group.jobs * self.job_hours

    @property
    def flops(self) -> float:
        """FLOPs of all jobs of the group."""
        return self.group.jobs * (self.group.steps * self.step_flops + self.forward_flops)


def cost(groups: Sequence[JobGroup], networks: NetworkCache, rate: Throughput,
         measured: dict[str, float] | None = None) -> list[GroupCost]:
    """FLOPs and time of each group; ``measured``: seconds per step by ``measure_key`` (else the model:
    the larger of FLOPs / throughput and ops x ``op_us``)."""
    costs = []
    for group in groups:
        step_flops, forward_flops = networks.flops(group.step_work), networks.flops(group.forward_work)
        compute = rate.seconds(step_flops, group.amp)
        launch = networks.launches(group.step_work) * rate.op_us * 1e-6
        step_seconds, bound = (compute, "FLOPs") if compute >= launch else (launch, "ops")
        if measured is not None and group.steps:
            step_seconds, bound = measured[group.measure_key], "measured"
        costs.append(GroupCost(group, step_flops, forward_flops, step_seconds, rate.seconds(forward_flops, False),
                               bound))
    return costs


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure_steps(groups: Sequence[JobGroup], steps: int, done: dict[str, float]) -> dict[str, float]:
    """Seconds per step of each distinct training step, ``(T(1 + steps) - T(1)) / steps`` with its training function.

    An untimed one-step run first takes the one-time costs (kernel selection, allocator, lazy
    initialisation). Where noise still makes the difference non-positive, ``T(1 + steps) / (1 + steps)``
    (set-up included: high) is used.
    """
    for group in groups:
        if not group.steps or group.measure_key in done:
            continue
        group.measure(1)
        times = []
        for k in (1, 1 + steps):
            _synchronize()
            start = time.perf_counter()
            group.measure(k)
            _synchronize()
            times.append(time.perf_counter() - start)
        per_step = (times[1] - times[0]) / steps
        note = ""
        if per_step <= 0:
            per_step, note = times[1] / (1 + steps), " (noisy: T(1 + k) / (1 + k), set-up included)"
        done[group.measure_key] = per_step
        print(f"  measured {group.rule} ({group.detail}): {per_step:.3g} s/step{note}", flush=True)
    return done


# ----------------------------------------------------------------------------- the workflow's own merge


def merge_configs(base: dict, extra: dict) -> dict:
    """``extra`` merged recursively over ``base`` (``snakemake.utils.update_config``: nested dicts merge)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _enabled(raw: dict, branch: str, schema: dict) -> bool:
    """Whether ``branch`` (dotted, e.g. ``ablation.segmentation``) is enabled in an unvalidated config."""
    node, props = raw, schema
    for part in branch.split("."):
        node, props = (node or {}).get(part) or {}, props["properties"][part]
    return bool(node.get("enabled", props["properties"]["enabled"]["default"]))


def workflow_note(path: Path, groups: Sequence[JobGroup], sizes: DataSizes) -> str | None:
    """How ``snakemake --configfile path`` (the file merged over config/config.yaml) differs from the file alone."""
    if path.resolve() == DEFAULT_CONFIG.resolve():
        return None
    with open(DEFAULT_CONFIG, encoding="utf-8") as handle:
        base = yaml.safe_load(handle) or {}
    with open(path, encoding="utf-8") as handle:
        own = yaml.safe_load(handle) or {}
    merged = merge_configs(base, own)
    schema = load_schema()
    extra = [b for b in BRANCHES if _enabled(merged, b, schema) and not _enabled(own, b, schema)]
    left_on = f"; config/config.yaml leaves {', '.join(extra)} enabled" if extra else ""
    try:
        merged = validate_config(merged)
    except ConfigError as error:
        return (f"`snakemake --configfile` merges this file over config/config.yaml{left_on}, and the merged config "
                f"fails validation ({error}). The estimate is for the file alone, as "
                "`--replace-workflow-config` runs it.")
    if {g.signature() for g in plan(merged, sizes)} == {g.signature() for g in groups}:
        return "merged over config/config.yaml (as `snakemake --configfile` runs it) the jobs are the same."
    return (f"merged over config/config.yaml (as `snakemake --configfile` runs it){left_on}: the job list differs "
            "from the file alone's (estimated here); see --detail on the merged config.")


# ----------------------------------------------------------------------------- output


def _fmt(value: float) -> str:
    """3 significant digits, thousands separated, no scientific notation below 1e6."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.1e}"


def _span(values: Sequence[float], fmt: Callable[[float], str] = _fmt) -> str:
    """``a`` when all values are equal, else ``min-max``; ``-`` when empty."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)}-{fmt(high)}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> None:
    """Aligned columns: the first ``left`` left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


RULE_HEADERS = ["rule", "jobs", "steps/job", "TFLOP/step", "fwd-only TFLOP/job", "s/step", "h/job", "GPU h"]


def rule_rows(costs: Sequence[GroupCost], achieved: bool = False) -> list[list[str]]:
    """One row per rule (columns :data:`RULE_HEADERS`); ``achieved`` adds TFLOP/s = FLOPs / measured time."""
    rules: dict[str, list[GroupCost]] = {}
    for c in costs:
        rules.setdefault(c.group.rule, []).append(c)
    rows = []
    for rule, items in rules.items():
        trained = [c for c in items if c.group.steps]
        launch_bound = "*" if any(c.bound == "ops" for c in trained) else ""
        row = [rule, _fmt(sum(c.group.jobs for c in items)), _span([c.group.steps for c in trained]),
               _span([c.step_flops / 1e12 for c in trained]), _span([c.forward_flops / 1e12 for c in items]),
               _span([c.step_seconds for c in trained]) + launch_bound, _span([c.job_hours for c in items]),
               f"{sum(c.hours for c in items):.2f}"]
        if achieved:
            row.append(_span([c.step_flops / c.step_seconds / 1e12 for c in trained if c.step_seconds > 0]))
        rows.append(row)
    return rows


def detail_rows(costs: Sequence[GroupCost]) -> list[list[str]]:
    """One row per job group."""
    return [[c.group.rule, c.group.detail, _fmt(c.group.jobs), _fmt(c.group.steps) if c.group.steps else "-",
             str(c.group.batch or "-"), _fmt(c.step_flops / 1e12) if c.group.steps else "-",
             ("bf16" if c.group.amp else "fp32") if c.group.steps else "fp32", _fmt(c.forward_flops / 1e12),
             _fmt(c.step_seconds) if c.group.steps else "-", c.bound if c.group.steps else "-",
             f"{c.job_hours:.3f}", f"{c.hours:.2f}"]
            for c in costs]


def config_title(path: Path) -> str:
    """The first sentence of a config file's leading comment."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
    text = " ".join(words)
    for end in (". ", ": "):
        text = text.split(end)[0]
    return text.rstrip(".:")


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", type=Path,
                        default=sorted((ROOT / "config" / "paper").glob("*.yaml")), help="config files")
    parser.add_argument("--tflops", type=float, default=100.0,
                        help="sustained TFLOP/s under bf16 autocast (default 100: ~10%% of an H100/H200's dense peak)")
    parser.add_argument("--fp32-ratio", type=float, default=0.5,
                        help="throughput without autocast, as a share of --tflops (default 0.5: TF32 convolutions)")
    parser.add_argument("--op-us", type=float, default=10.0,
                        help="microseconds per eager op: a training step takes at least its ops x this (default 10; "
                             "0 = FLOPs only)")
    parser.add_argument("--class-counts", default=COVID_CT_COUNTS,
                        help=f"slices per class of image_folder/dicom datasets, before the split (default "
                             f"{COVID_CT_COUNTS}: COVID-CT v1)")
    parser.add_argument("--lus-frames", type=int, default=LUS_FRAMES,
                        help=f"frames per severity score of lus_mat/lus_video datasets, before the split (default "
                             f"{LUS_FRAMES}: unknown for the paper data; any count >= batch_size costs the same)")
    parser.add_argument("--detail", action="store_true", help="also print one row per job group")
    parser.add_argument("--measure", action="store_true",
                        help="time real training steps on the available device instead of the FLOP model (needs a "
                             "GPU at paper sizes; on a CPU only with a small config)")
    parser.add_argument("--measure-steps", type=int, default=3, help="timed steps per distinct training step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = {name: int(n) for name, n in (item.split("=") for item in args.class_counts.split(","))}
    sizes = DataSizes(counts, args.lus_frames)
    rate = Throughput(args.tflops, args.fp32_ratio, args.op_us)
    networks = NetworkCache()
    device = select_device("auto")
    threads = torch.get_num_threads()
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU, {threads} torch thread{'s' * (threads != 1)}")

    print("Estimated GPU time per paper config, run end to end on one GPU, one job after another.")
    print("Steps per job as the training code counts them; FLOPs per step = forward-pass equivalents per network")
    print("(forward 1, backward 2, backward through a frozen network 1) x forward FLOPs counted with")
    print("torch.utils.flop_counter.FlopCounterMode on a probe batch (conv + matmul, 2 per multiply-accumulate),")
    print("scaled linearly by batch size.")
    if args.measure:
        print(f"Seconds per training step MEASURED on {device_name} ({args.measure_steps} steps after 1 warm-up); "
              f"forward-only work at {args.tflops:g} TFLOP/s x {args.fp32_ratio:g} (fp32).")
        if device.type != "cuda":
            print("WARNING: no GPU: measured CPU times, a sanity check only (use a small config).")
    else:
        print(f"Throughput assumed: {args.tflops:g} TFLOP/s sustained under bf16 autocast (about 10% of the dense "
              f"bf16 peak of one H100/H200, typical of small-batch convolutional GANs); fp32 work (DenseNet-169, "
              f"feature extractor, all inference) at {args.fp32_ratio:g}x that (TF32).")
    if not args.measure and args.op_us:
        print(f"A training step takes at least its eager launch time: aten ops per step (forward ops x the same "
              f"pass factors) x {args.op_us:g} us; '*' marks rules where that floor, not the FLOPs, sets s/step.")
    print(f"Dataset sizes assumed: image_folder/dicom classes {counts} slices before the split "
          f"(train/val/test = round(fraction x count)); lus_mat/lus_video {args.lus_frames} frames per score; "
          "conditional GANs and U-Net cells use the augment counts of the config.")
    print("Not counted: CPU-only rules (ingest, preprocess, augmentation, tables, report), similarity_lusgan "
          "(image metrics, no network), FID/KID statistics, data loading.\n")

    measured: dict[str, float] | None = {} if args.measure else None
    summary = []
    for path in args.configs:
        config = load_config(path)
        groups = plan(config, sizes)
        if measured is not None:
            measure_steps(groups, args.measure_steps, measured)
        costs = cost(groups, networks, rate, measured)
        name = _relative(path)
        print(f"== {name}: {config_title(path)}")
        print_table(RULE_HEADERS + ["achieved TFLOP/s"] * args.measure, rule_rows(costs, args.measure))
        total_hours = sum(c.hours for c in costs)
        total_flops = sum(c.flops for c in costs)
        n_jobs = sum(c.group.jobs for c in costs)
        n_steps = sum(c.group.jobs * c.group.steps for c in costs)
        print(f"total: {n_jobs} GPU jobs, {n_steps:,} optimizer steps, {_fmt(total_flops / 1e15)} PFLOP, "
              f"{_fmt(total_hours)} GPU hours ({_fmt(total_hours / 24)} GPU days)")
        if args.detail:
            print()
            print_table(["rule", "detail", "jobs", "steps/job", "batch", "TFLOP/step", "step", "fwd-only TFLOP/job",
                         "s/step", "bound", "h/job", "GPU h"], detail_rows(costs), left=2)
        note = workflow_note(path, groups, sizes)
        if note:
            print(f"note: {note}")
        print()
        trained = {c.group.rule for c in costs if c.group.steps}
        what = ", ".join(f"{sum(c.group.jobs for c in costs if c.group.rule == r)} {r}" for r in dict.fromkeys(
            c.group.rule for c in costs) if r in trained)
        summary.append(f"| `{name}` | {what} | {n_steps:,} | {_fmt(total_flops / 1e15)} | {_fmt(total_hours)} |")

    basis = f"measured on {device_name}" if args.measure else f"at {args.tflops:g} TFLOP/s"
    print(f"README rows (GPU hours {basis}):")
    print("| config | training jobs | optimizer steps | PFLOP | GPU hours |")
    print("|---|---|---:|---:|---:|")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
