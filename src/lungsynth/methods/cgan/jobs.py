"""Stage-level entry points of the conditional-GAN branch (seed 001): paths in, artifacts out.

Artifacts (under ``results/<dataset>/cgan/``):

- ``data/train_aug.pt``, ``data/test_aug.pt``: augmented pairs, dicts with ``images``
  uint8 ``(N, 1, S, S)``, ``labels`` uint8 ``(N, S, S)`` (0 outside lung, 1 lung,
  2 ground-glass, 3 consolidation), ``source_index`` (row of the source split) and ``ids``.
- ``<method>/<step>/model.pt``: weights of generator, discriminators and DFM net after
  each training step, with the method's spec.
- ``<method>/generated.pt``: ``synthetic`` (generator output) and ``composite``
  (synthetic lung pasted into the real image's non-lung area), uint8, aligned with test_aug.
- ``quality/extractor.pt``, ``quality/<method>.csv``, ``table2.csv``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import torch

from lungsynth.artifacts import torch_load, torch_save, write_csv
from lungsynth.networks.feature_extractor import InceptionFeatures
from lungsynth.tasks.feature_extractor import load_feature_extractor, save_feature_extractor, train_feature_extractor
from lungsynth.methods.cgan.quality import quality_table
from lungsynth.data.segmentation import augment_pairs, composite, load_segmentation_split, lung_region
from lungsynth.engine import select_device
from lungsynth.methods.cgan.train import CGANSettings, load_cgan, synthesise, train_cgan_step
from lungsynth.methods.cgan.specs import method_label, method_spec

log = logging.getLogger(__name__)


def augment_job(split_path: str | Path, out_path: str | Path, count: int, settings: dict) -> dict:
    """Augment the pairs of one preprocessed split to ``count`` (originals first)."""
    split = load_segmentation_split(split_path)
    if len(split["images"]) == 0:
        raise ValueError(f"{split_path}: no slices to augment")
    images, labels, source = augment_pairs(
        split["images"], split["labels"], count, seed=settings["seed"], scale=tuple(settings["scale"]),
        rotation_deg=settings["rotation"], noise_std=settings["noise_std"],
        elastic_alpha=settings["elastic_alpha"], elastic_sigma=settings["elastic_sigma"])
    ids = [split["ids"][i] for i in source.tolist()]
    torch_save(out_path, {"images": images, "labels": labels, "source_index": source, "ids": ids})
    log.info("%s: %d slices -> %d augmented pairs", Path(split_path).name, len(split["images"]), len(images))
    return {"n_source": len(split["images"]), "n": len(images)}


def train_cgan_step_job(
    train_aug: str | Path,
    method: str,
    step: str,
    model_config: dict,
    settings: dict,
    work_dir: str | Path,
    model_out: str | Path,
    losses_out: str | Path,
    init_model: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train one step of one method (resuming from ``work_dir``), starting from the previous step's weights."""
    data = torch_load(train_aug)
    spec = method_spec(method, model_config)
    init = torch_load(init_model) if init_model else None
    started = time.perf_counter()
    result = train_cgan_step(data["images"], data["labels"], spec, CGANSettings.from_dict(settings), step, work_dir,
                             init=init, progress=progress)
    seconds = time.perf_counter() - started
    log.info("%s step %s: %d iterations on %d pairs in %.0f s (%s)%s", method, step, result["iterations"],
             len(data["images"]), seconds, result["device"],
             f", resumed from {result['resumed_from']}" if result["resumed_from"] is not None else "")
    torch_save(model_out, {k: result[k] for k in ("generator", "discriminator", "dfm", "spec", "step", "channels",
                                                  "image_size", "iterations")})
    write_csv(losses_out, pd.read_csv(result["loss_csv"]))
    return result


def generate_cgan_job(model_path: str | Path, test_aug: str | Path, out_path: str | Path, *, batch_size: int = 32,
                      device: str = "auto", progress: bool = True) -> dict:
    """Synthesise every augmented test map, and the composite with the real non-lung area."""
    dev = select_device(device)
    generator, spec = load_cgan(model_path, dev)
    data = torch_load(test_aug)
    started = time.perf_counter()
    synthetic = synthesise(generator, spec, data["labels"], data["images"], batch_size=batch_size, device=dev,
                           progress=progress)
    seconds = time.perf_counter() - started
    merged = composite(data["images"], synthetic, lung_region(data["labels"]))
    torch_save(out_path, {"synthetic": synthetic, "composite": merged, "method": spec["method"],
                          "images_per_second": len(synthetic) / max(seconds, 1e-9), "device": str(dev)})
    log.info("%s: %d images in %.1f s (%.1f images/s on %s)", spec["method"], len(synthetic), seconds,
             len(synthetic) / max(seconds, 1e-9), dev)
    return {"n": len(synthetic), "seconds": seconds}


def feature_extractor_job(train_aug: str | Path, out_path: str | Path, history_out: str | Path, settings: dict,
                          progress: bool = True, work_dir: str | Path | None = None) -> None:
    """Train the domain feature extractor of FID/KID on the real training pairs (resumable from ``work_dir``)."""
    data = torch_load(train_aug)
    model, history = train_feature_extractor(
        data["images"], data["labels"], width=settings["extractor_width"], epochs=settings["extractor_epochs"],
        seed=settings["seed"], device=str(select_device(settings["device"])), progress=progress, work_dir=work_dir)
    save_feature_extractor(model, out_path)
    write_csv(history_out, history)


def _extractor(extractor_path: str | Path, inception_weights: str | None):
    if inception_weights:
        return InceptionFeatures(inception_weights), "Inception-v3 pool features (user weights)"
    return load_feature_extractor(extractor_path), "domain feature extractor (trained on the real training pairs)"


def quality_job(test_aug: str | Path, generated: str | Path, extractor_path: str | Path, out_csv: str | Path,
                settings: dict) -> pd.DataFrame:
    """Table II rows of one method: FID, KID, PSNR, SSIM, RMSE for complete and lung-only images."""
    data = torch_load(test_aug)
    gen = torch_load(generated)
    extractor, feature_name = _extractor(extractor_path, settings.get("inception_weights"))
    table = quality_table(data["images"], gen["synthetic"], data["labels"], extractor,
                          kid_subset_size=settings["kid_subset_size"], n_bootstrap=settings["n_bootstrap"],
                          seed=settings["seed"], device=str(select_device(settings["device"])))
    table.insert(0, "method", gen["method"])
    table["features"] = feature_name
    write_csv(out_csv, table)
    return table


def table2(quality_csvs: dict[str, str | Path], out_csv: str | Path) -> pd.DataFrame:
    """All methods' quality rows in one long table (method, label, region, metric, value, low, high, n)."""
    frames = []
    for method, path in quality_csvs.items():
        frame = pd.read_csv(path)
        frame["method"] = method
        frame.insert(1, "label", method_label(method))
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    write_csv(out_csv, table)
    return table


def pick_cases(labels: torch.Tensor, n_cases: int) -> list[int]:
    """Indices of ``n_cases`` test maps spread over lesion burden (lesion-pixel share, low to high)."""
    burden = (labels >= 2).flatten(1).float().mean(1)
    order = torch.argsort(burden, stable=True).tolist()
    n = min(n_cases, len(order))
    return [order[round(i * (len(order) - 1) / max(n - 1, 1))] for i in range(n)]


def cases_figure_job(test_aug: str | Path, generated: dict[str, str | Path], out_png: str | Path,
                     n_cases: int = 4) -> None:
    """The map | real | each method figure for a few test cases."""
    from lungsynth.figures import cgan_cases

    data = torch_load(test_aug)
    rows = pick_cases(data["labels"], n_cases)
    synthetic = {m: torch_load(p)["synthetic"][rows] for m, p in generated.items()}
    cgan_cases(data["labels"][rows], data["images"][rows], synthetic, out_png,
               titles={m: method_label(m) for m in generated})
