"""Training of the conditional GANs (segmentation map -> CT slice): seed 001 and its comparators.

Methods (``cgan.methods``):

- ``globallocal``: seed 001. Global-local generator with DESUM, two PatchGAN
  discriminators (full and half resolution) with dynamic feature matching (DFM),
  LSGAN adversarial loss + ``fm_weight`` x DFM loss; three steps (G1 alone at
  half resolution, G2 on a frozen G1, jointly), each its own job.
- ``pix2pixhd``: the same generator and discriminators with a plain sum instead of
  DESUM and unweighted feature matching (the mean over discriminators); same three
  steps. No VGG perceptual loss: it needs ImageNet weights, which are never downloaded.
- ``pix2pix``: U-Net generator, one PatchGAN (batch norm), BCE + ``l1_weight`` x L1.
- ``spade``: SPADE residual generator, two spectral-norm PatchGANs, hinge loss +
  feature matching, TTUR (``ttur_lr_g``, ``ttur_lr_d``, Adam betas 0, 0.9).
- ``sean``: ``spade`` with SEAN normalisation: per-region style codes encoded from the
  real image paired with the map (at test time, the real image of the test map).

Table V variants (``cgan.variants``) are ``globallocal`` with one switch changed
(:data:`VARIANTS`). Every method is a *spec* dict (:func:`method_spec`) stored with
its weights, so generation rebuilds exactly the trained network.

Learning rate: constant for ``epochs``, then linear decay to 0 over ``decay_epochs``
(per step of the three-step schedule), applied per iteration. Randomness comes from
``(seed, epoch)`` (batch order), so a job resumed from a checkpoint continues
exactly as the uninterrupted one would.

Data-efficient switches (:mod:`lungsynth.methods.data_efficient`, all off by default; off, the
trainer draws and computes exactly what it did before they existed), for every method:

- ``diffaugment``: the discriminators see (map, image) pairs, augmented together
  (:func:`lungsynth.transforms.diffaugment.diff_augment` with ``extra=[map]``): the one-hot map
  gets the image's translation and cutout (filled with 0, no class), the intensity ops touch the
  image only. In the critic step the real pair draws from stream ``"real"`` and the fake pair
  from ``"fake"`` (call 0 of the step). Feature matching compares D's features of a real and a
  fake pair, so both must be augmented alike: the generator step augments its fake pair with
  the very parameters of the critic step's real pair (stream ``"real"``, call 0, same ``p``) and
  matches against that pass's (detached) real features, as without augmentation; with dynamic
  feature matching the DFM net's objective in the critic step uses one extra no-grad pass of the
  fake pair augmented the same way. ``p`` is constant within an iteration (ADA sees the
  iteration's real outputs at its end).
- ADA: the signal is the patch logits (last output) of each scale on the real pair, averaged
  per sample over patches and scales, mapped to "positive = real" by
  :func:`~lungsynth.methods.data_efficient.overfit_logits` (``lsgan``: minus 0.5).
- ``r1_gamma``: R1 on the real image fed to D (before augmentation; at half resolution in the
  ``global`` step), not on the map: the gradient of the patch logits summed over patches and
  scales.
- ``ema_decay``: the EMA of the generator (updated after each generator step) is the result's
  ``generator``, i.e. what ``model.pt`` holds, what synthesis uses and what the next step of
  the three-step schedule starts from (its frozen G1 is the previous step's EMA G1; a frozen
  parameter's average stays bit-identical to it). Discriminator and DFM net continue raw.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lungsynth.artifacts import torch_load
from lungsynth.losses.adversarial import discriminator_loss, generator_loss
from lungsynth.networks.cgan import (
    DFMWeighting,
    GlobalLocalGenerator,
    MultiscaleDiscriminator,
    SEANGenerator,
    SPADEGenerator,
    UNetGenerator,
    downsample,
    downsample_labels,
    feature_matching_loss,
    init_weights_,
    per_scale_feature_matching,
)
from lungsynth.methods.cgan.specs import method_steps
from lungsynth.runlog import progress_bar
from lungsynth.data.segmentation import N_LABELS, one_hot
from lungsynth.engine import LoopSettings, epoch_batches, Step, TrainingLoop, run_fingerprint
from lungsynth.methods.data_efficient import (DataEfficient, DataEfficientSettings, fingerprint_view, log_columns,
                                             overfit_logits)
from lungsynth.data.preprocess import decode_uint8
from lungsynth.data.preprocess import encode_uint8

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "epoch", "lr", "loss_d", "loss_g_adv", "loss_fm", "loss_l1", "loss_dfm", "alpha", "beta")


def _log2(size: int) -> int:
    k = int(round(math.log2(size)))
    if 2**k != size:
        raise ValueError(f"image size must be a power of two, got {size}")
    return k


def build_networks(spec: dict, image_channels: int, image_size: int, n_labels: int = N_LABELS) -> dict[str, nn.Module | None]:
    """``{"generator", "discriminator", "dfm"}`` of a spec, initialised N(0, 0.02).

    The discriminator sees the one-hot map concatenated with the image; ``dfm`` is
    ``None`` unless the spec weights feature matching dynamically.
    """
    family = spec["family"]
    k = _log2(image_size)
    if family == "globallocal":
        generator = GlobalLocalGenerator(
            n_labels, image_channels, width=spec["width"], n_local=spec["n_local"],
            n_downsample_global=spec["n_downsample_global"], n_blocks_global=spec["n_blocks_global"],
            n_blocks_local=spec["n_blocks_local"], fusion=spec["fusion"], fixed_alpha=spec["fixed_alpha"],
            desum_source=spec["desum_source"], desum_hidden=spec["desum_hidden"])
    elif family == "pix2pix":
        generator = UNetGenerator(n_labels, image_channels, width=spec["unet_width"], n_down=k)
    elif family == "spade":
        generator = SPADEGenerator(n_labels, image_channels, width=spec["spade_width"], image_size=image_size,
                                   n_up=max(1, k - 3), hidden=spec["spade_hidden"])
    elif family == "sean":
        generator = SEANGenerator(n_labels, image_channels, width=spec["spade_width"], image_size=image_size,
                                  n_up=max(1, k - 3), hidden=spec["spade_hidden"], style_dim=spec["style_dim"])
    else:
        raise ValueError(f"unknown family {family!r}")
    discriminator = MultiscaleDiscriminator(n_labels + image_channels, width=spec["d_width"], n_layers=spec["d_layers"],
                                            n_scales=spec["n_scales"], norm=spec["d_norm"], spectral=spec["spectral"],
                                            padding=1 if family == "pix2pix" else 2)
    init_weights_(generator)
    init_weights_(discriminator)
    dfm = None
    if spec["dfm"] == "dynamic":
        with torch.no_grad():
            probe = torch.zeros(1, n_labels + image_channels, image_size, image_size)
            channels = _dfm_feature(discriminator(probe), spec).shape[1]
        dfm = DFMWeighting(channels, n_scales=spec["n_scales"], hidden=spec["dfm_hidden"])
        init_weights_(dfm)
    return {"generator": generator, "discriminator": discriminator, "dfm": dfm}


def _dfm_feature(d_out: list[list[torch.Tensor]], spec: dict) -> torch.Tensor:
    """The intermediate discriminator feature DFM observes (``dfm_layer`` of the full- or half-resolution D)."""
    scale = 0 if spec["dfm_source"] == "full" else 1
    layers = d_out[scale][:-1]
    return layers[min(spec["dfm_layer"], len(layers) - 1)]


def scale_weights(spec: dict, dfm: nn.Module | None, d_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Weights of the per-discriminator feature-matching losses, summing to 1 over discriminators.

    ``dynamic``: DFM net output on the (detached) observed feature of each sample,
    ``(B, n_scales)`` (beta, 1 - beta for two discriminators); ``fixed``: (fixed_beta, 1 - fixed_beta)
    (for more discriminators the rest is shared equally); ``none``: equal weights
    (pix2pixHD's mean over discriminators). The last two are ``(n_scales,)``.
    """
    n = spec["n_scales"]
    device = d_fake[0][-1].device
    if spec["dfm"] == "dynamic":
        return dfm(_dfm_feature(d_fake, spec).detach().float())
    if spec["dfm"] == "fixed":
        beta = float(spec["fixed_beta"])
        rest = [(1 - beta) / (n - 1)] * (n - 1)
        return torch.tensor([beta, *rest], device=device)
    return torch.full((n,), 1.0 / n, device=device)


def dfm_objective(weights: torch.Tensor, fm: torch.Tensor, temperature: float) -> torch.Tensor:
    """Loss of the DFM net (minimised on the discriminator side): ``-(sum_s w_s r_s) - T * H(w)``.

    ``weights`` ``(B, n_scales)`` from the DFM net; ``fm`` ``(B, n_scales)`` per-discriminator
    feature-matching distances (detached), ``r = fm / mean_s(fm)`` their relative size; ``H`` the
    entropy of ``w``. The optimum is ``w = softmax(r / T)``: more weight on the discriminator whose
    features tell the synthetic image from the real one more clearly, tempered by ``T``
    (``dfm_temperature``). Minimising the generator's loss over ``w`` instead drives beta to 0 or 1
    within tens of iterations (all weight on the smaller term), which is why the net is trained here.
    """
    relative = fm / fm.mean(1, keepdim=True).clamp_min(1e-8)
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(1)
    return -((weights * relative).sum(1) + temperature * entropy).mean()


@dataclass
class CGANSettings(DataEfficientSettings, LoopSettings):
    """Training settings shared by all conditional GANs (see the config schema).

    The data-efficient switches (:class:`~lungsynth.methods.data_efficient.DataEfficientSettings`)
    are off by default; TTUR is the SPADE/SEAN ``ttur_lr_g`` / ``ttur_lr_d``.
    """

    epochs: int = 10
    decay_epochs: int = 10
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    fm_weight: float = 10.0
    dfm_temperature: float = 0.25
    l1_weight: float = 100.0
    ttur_lr_g: float = 1e-4
    ttur_lr_d: float = 4e-4
    channels_last: bool = True


def lr_factor(step: int, total: int, decay: int) -> float:
    """Multiplier of the base lr at iteration ``step`` of ``total``: 1, then linear to 0 over the last ``decay``."""
    if decay <= 0 or step < total - decay:
        return 1.0
    return max(0.0, (total - step) / decay)


def _generate(generator: nn.Module, spec: dict, maps: torch.Tensor, real: torch.Tensor | None,
              step: str) -> torch.Tensor:
    if step == "global":
        return generator.forward_global(maps)
    if spec["family"] == "sean":
        return generator(maps, generator.encode_styles(real, maps))
    return generator(maps)


def augment_pair(tricks: DataEfficient, maps: torch.Tensor, image: torch.Tensor, which: str, step: int,
                 call: int = 0) -> torch.Tensor:
    """The discriminator input ``cat([map, image], 1)`` of a pair, DiffAugmented together.

    One draw of stream ``(which, step, call)``: the map gets the same translation and cutout as
    the image (filled with 0, no class) and no intensity op. Off: the plain concatenation.
    """
    image, (maps,) = tricks.augment(image, which, step, call, extra=[maps])
    return torch.cat([maps, image], 1)


def patch_logits(d_out: list[list[torch.Tensor]], reduce: str = "mean") -> torch.Tensor:
    """The last output (patch logits) of each discriminator scale, reduced per sample over patches
    and scales: ``(B,)`` (``"mean"``: the ADA signal; ``"sum"``: what R1 differentiates)."""
    per_scale = [o[-1].float().flatten(1) for o in d_out]
    if reduce == "sum":
        return torch.stack([t.sum(1) for t in per_scale], 1).sum(1)
    return torch.stack([t.mean(1) for t in per_scale], 1).mean(1)


def _trainable(generator: nn.Module, step: str) -> list[nn.Parameter]:
    if step == "global":
        params = generator.global_parameters()
    elif step == "local":
        params = generator.local_parameters()
    else:
        params = list(generator.parameters())
    wanted = {id(p) for p in params}
    for p in generator.parameters():
        p.requires_grad_(id(p) in wanted)
    return params


def train_cgan_step(
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: dict,
    settings: CGANSettings,
    step_name: str,
    work_dir: str | Path,
    *,
    init: dict | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train one step of one method on map/image pairs.

    Args:
        images: uint8 ``(N, C, S, S)`` real slices (already augmented).
        labels: uint8 ``(N, S, S)`` label maps (0 outside lung, 1 lung, 2 GGO, 3 consolidation).
        spec: :func:`method_spec` output.
        step_name: one of :func:`method_steps` (``global``, ``local``, ``joint`` or ``full``).
        work_dir: folder for ``checkpoints/`` and the live ``losses.csv``; resumed from.
        init: the previous step's result (weights of generator, discriminator and DFM).
        stop_after: stop (as if killed) after this many iterations (tests).
    Returns:
        dict with state dicts ``generator`` (with ``ema_decay``: the averaged generator),
        ``discriminator``, ``dfm`` (or None), ``spec``, ``step``, ``iterations``, ``resumed_from``,
        ``loss_csv``, ``device``.

    The data-efficient switches of ``settings`` (DiffAugment of the (map, image) pairs, ADA, R1,
    generator EMA) work as the module docstring describes; all off, nothing changes.
    """
    if step_name not in method_steps(spec):
        raise ValueError(f"method {spec['method']} has steps {method_steps(spec)}, not {step_name!r}")
    n, channels, size, _ = images.shape
    batch, per_epoch = epoch_batches(n, settings.batch_size, "pairs")
    decay_steps = settings.decay_epochs * per_epoch
    total = (settings.epochs + settings.decay_epochs) * per_epoch
    loop = TrainingLoop.from_settings(work_dir, settings, total=total,
                                      loss_columns=LOSS_COLUMNS + log_columns(settings),
                                      desc=f"{spec['method']}:{step_name}", progress=progress, stop_after=stop_after)
    device, precision = loop.device, loop.precision

    loop.seed_torch()
    nets = build_networks(spec, channels, size)
    generator, discriminator, dfm = nets["generator"], nets["discriminator"], nets["dfm"]
    if init is not None:
        generator.load_state_dict(init["generator"])
        discriminator.load_state_dict(init["discriminator"])
        if dfm is not None and init.get("dfm") is not None:
            dfm.load_state_dict(init["dfm"])
    memory_format = torch.channels_last if settings.channels_last and device.type == "cuda" else torch.preserve_format
    for net in (generator, discriminator, dfm):
        if net is not None:
            net.to(device, memory_format=memory_format).train()
    tricks = DataEfficient(settings, loop, generator)  # the EMA starts from the (loaded) initial weights

    g_params = _trainable(generator, step_name)
    d_params = list(discriminator.parameters()) + (list(dfm.parameters()) if dfm is not None else [])
    ttur = spec["family"] in ("spade", "sean")
    lr_g, lr_d = (settings.ttur_lr_g, settings.ttur_lr_d) if ttur else (settings.lr, settings.lr)
    betas = (0.0, 0.9) if ttur else (settings.beta1, settings.beta2)
    opt_g = torch.optim.Adam(g_params, lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(d_params, lr=lr_d, betas=betas)
    loop.resume({"generator": generator, "discriminator": discriminator, "dfm": dfm, "opt_g": opt_g, "opt_d": opt_d}
                | tricks.state(),
                run_fingerprint(images, labels, spec, fingerprint_view(settings), step_name, init, generator,
                                discriminator, dfm))

    factor = 2 ** spec["n_local"] if step_name == "global" else 1
    order = loop.epoch_order(n, batch, per_epoch)

    def step_fn(step: int) -> Step:
        epoch, rows = order(step)
        real = decode_uint8(images[rows]).to(device, memory_format=memory_format)
        maps = one_hot(labels[rows]).to(device, memory_format=memory_format)
        scale = lr_factor(step, total, decay_steps)
        for group in opt_g.param_groups:
            group["lr"] = lr_g * scale
        for group in opt_d.param_groups:
            group["lr"] = lr_d * scale
        maps_d, real_d = (downsample_labels(maps, factor), downsample(real, factor)) if factor > 1 else (maps, real)
        p = tricks.augment.p  # constant within the iteration: ADA observes at its end
        real_r1 = tricks.r1.watch(real_d, step)  # the real image D sees, before augmentation

        with precision.autocast():
            fake = _generate(generator, spec, maps, real, step_name)
            d_real = discriminator(augment_pair(tricks, maps_d, real_r1, "real", step))
            d_fake = discriminator(augment_pair(tricks, maps_d, fake.detach(), "fake", step))
            loss_d = sum(discriminator_loss(spec["loss"], r[-1].float(), f[-1].float())
                         for r, f in zip(d_real, d_fake)) / len(d_real)
            if spec["family"] == "pix2pix":
                loss_d = loss_d * 0.5  # pix2pix halves D's objective to slow it relative to G
            loss_dfm = torch.zeros((), device=device)
            if dfm is not None:
                d_fake_fm = d_fake
                if tricks.augment.enabled:  # feature matching needs the fake pair augmented like the real one
                    with torch.no_grad():
                        d_fake_fm = discriminator(augment_pair(tricks, maps_d, fake.detach(), "real", step))
                fm = per_scale_feature_matching([[t.detach().float() for t in r] for r in d_real],
                                                [[t.detach().float() for t in f] for f in d_fake_fm])
                loss_dfm = dfm_objective(scale_weights(spec, dfm, d_fake_fm), fm, settings.dfm_temperature)
        loss_d = tricks.r1.add(loss_d, patch_logits(d_real, "sum"), real_r1, step)
        opt_d.zero_grad(set_to_none=True)
        precision.backward(loss_d + loss_dfm)
        precision.step(opt_d)

        with precision.autocast():
            # the parameters of the critic step's real pair, so feature matching compares like with like
            d_gen = discriminator(augment_pair(tricks, maps_d, fake, "real", step))
            adv = sum(generator_loss(spec["loss"], r[-1].detach().float(), g[-1].float())
                      for r, g in zip(d_real, d_gen)) / len(d_gen)
            loss_fm = torch.zeros((), device=device)
            loss_l1 = torch.zeros((), device=device)
            weights = None
            if spec["family"] == "pix2pix":
                loss_l1 = F.l1_loss(fake.float(), real_d.float())
                loss_g = adv + settings.l1_weight * loss_l1
            else:
                weights = scale_weights(spec, dfm, d_gen).detach()  # the DFM net learns on D's side
                real_feats = [[t.detach().float() for t in r] for r in d_real]
                fake_feats = [[t.float() for t in g] for g in d_gen]
                # seed 001 eq. 4: per discriminator, the sum over its intermediate layers of the mean L1
                loss_fm = feature_matching_loss(real_feats, fake_feats, weights) * (len(d_gen[0]) - 1)
                loss_g = adv + settings.fm_weight * loss_fm
        opt_g.zero_grad(set_to_none=True)
        precision.backward(loss_g)
        precision.step(opt_g)
        precision.update()
        tricks.after_generator_step(generator)
        tricks.observe(overfit_logits(spec["loss"], patch_logits(d_real).detach(), patch_logits(d_fake).detach()))

        alphas = getattr(generator, "alphas", [])
        alpha = float(torch.stack([a.detach().float().mean() for a in alphas]).mean()) if alphas and step_name != "global" else float("nan")
        beta = float(weights[..., 0].detach().float().mean()) if weights is not None else float("nan")
        values = (loss_d.item(), adv.item(), loss_fm.item(), loss_l1.item(), loss_dfm.item())
        return Step(row=(step, epoch, round(lr_g * scale, 8), *(round(v, 6) for v in values), round(alpha, 6),
                         round(beta, 6), *tricks.row(p)),
                    losses=dict(zip(LOSS_COLUMNS[3:8], values)),
                    postfix={"loss_d": f"{values[0]:.3f}", "adv": f"{values[1]:.3f}"})

    ended = loop.run(step_fn)
    if ended.stopped:
        return {"stopped_at": ended.step, "resumed_from": ended.resumed_from}
    for param in generator.parameters():
        param.requires_grad_(True)

    def run_batch(net: torch.nn.Module, rng: torch.Generator) -> torch.Tensor:
        rows = torch.randint(n, (batch,), generator=rng)
        real = decode_uint8(images[rows]).to(device, memory_format=memory_format)
        return _generate(net, spec, one_hot(labels[rows]).to(device, memory_format=memory_format), real, step_name)

    trained = tricks.trained_generator(generator, run_batch).state_dict()
    return {
        "generator": {k: v.cpu() for k, v in trained.items()},
        "discriminator": {k: v.cpu() for k, v in discriminator.state_dict().items()},
        "dfm": {k: v.cpu() for k, v in dfm.state_dict().items()} if dfm is not None else None,
        "spec": dict(spec),
        "step": step_name,
        "channels": channels,
        "image_size": size,
        "iterations": total,
        "resumed_from": ended.resumed_from,
        "loss_csv": ended.loss_csv,
        "device": str(device),
    }


def load_cgan(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The trained generator (eval mode) and its spec from a step's ``model.pt``."""
    state = torch_load(path)
    nets = build_networks(state["spec"], state["channels"], state["image_size"])
    generator = nets["generator"]
    generator.load_state_dict(state["generator"])
    return generator.to(device).eval(), state["spec"]


@torch.no_grad()
def synthesise(generator: nn.Module, spec: dict, labels: torch.Tensor, real: torch.Tensor | None = None, *,
               batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = False,
               seed: int = 0) -> torch.Tensor:
    """Images synthesised from label maps: uint8 ``(N, C, S, S)``.

    ``labels`` uint8 ``(N, S, S)``; ``real`` uint8 ``(N, C, S, S)`` is needed by SEAN only
    (its per-region style codes are encoded from the real image of each map).
    """
    if spec["family"] == "sean" and real is None:
        raise ValueError("SEAN needs the real images of the maps to encode its style codes")
    device = torch.device(device)
    out = []
    starts = range(0, len(labels), batch_size)
    # pix2pix synthesises in training mode, as its authors do: batch-norm statistics of the batch
    # and dropout as the noise source (seeded here, so the output is reproducible)
    was_training = generator.training
    generator.train(spec["family"] == "pix2pix")
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in progress_bar(starts, total=len(starts), desc=f"synthesise {spec['method']}", unit="batch",
                                  disable=not progress):
            maps = one_hot(labels[start : start + batch_size]).to(device)
            ref = decode_uint8(real[start : start + batch_size]).to(device) if real is not None else None
            out.append(encode_uint8(_generate(generator, spec, maps, ref, "full").float().cpu()))
    generator.train(was_training)
    return torch.cat(out)
