"""Manifest slices -> cached uint8 tensors that training reads without decoding images.

Per slice: HU sources are clipped to a window and scaled to [0, 1]; 8-bit sources
are brightness-normalised; channels are converted (luma for RGB -> gray, replication
for gray -> RGB); the slice is padded to a square with its minimum value and resized
with anti-aliasing; values are quantised to uint8 (0..255). Consumers decode with
``x / 127.5 - 1`` to [-1, 1] (:func:`lungsynth.methods.dcgan.train.decode_uint8`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize

from lungsynth.errors import InputDataError
from lungsynth.data.ingest import mat_reload_options, read_manifest
from lungsynth.artifacts import torch_save, write_json
from lungsynth.data.readers import load_frame, load_image
from lungsynth.runlog import progress_bar
from lungsynth.data.splits import check_no_leakage

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_unit_range(image: np.ndarray, unit: str, window: tuple[float, float], normalise_8bit: str) -> np.ndarray:
    """Scale a ``(H, W, C)`` float image to [0, 1].

    ``unit == "HU"``: clip to ``window`` = (low, high) HU and scale linearly.
    ``unit == "8bit"``: ``none`` -> x / 255; ``minmax`` -> (x - min) / (max - min);
    ``percentile`` -> stretch the 0.5..99.5 percentiles to 0..1 and clip.
    """
    image = image.astype(np.float32, copy=False)
    if unit == "HU":
        low, high = window
        return np.clip((image - low) / (high - low), 0.0, 1.0)
    if unit != "8bit":
        raise ValueError(f"unknown unit {unit!r}")
    if normalise_8bit == "none":
        return np.clip(image / 255.0, 0.0, 1.0)
    if normalise_8bit == "minmax":
        low, high = float(image.min()), float(image.max())
    else:
        low, high = (float(v) for v in np.percentile(image, [0.5, 99.5]))
    if high - low < 1e-6:
        return np.zeros_like(image)
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, C)`` with C in {1, 3} -> ``(H, W, channels)``."""
    if image.shape[2] == channels:
        return image
    if channels == 1:
        return (image @ LUMA)[:, :, None]
    return np.repeat(image, channels, axis=2)


def pad_square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pad ``(H, W, C)`` to a centred square with the image minimum, then resize to ``size``."""
    h, w, _ = image.shape
    side = max(h, w)
    if h != w:
        fill = float(image.min())
        padded = np.full((side, side, image.shape[2]), fill, dtype=image.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        padded[top : top + h, left : left + w] = image
        image = padded
    if side != size:
        image = resize(image, (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
    return image.astype(np.float32)


def preprocess_slice(image: np.ndarray, unit: str, *, window, normalise_8bit: str, channels: int, size: int,
                     crop_sector: bool = False) -> np.ndarray:
    """One slice -> uint8 ``(channels, size, size)``; ``crop_sector`` first crops an ultrasound frame to its sector."""
    if crop_sector:
        from lungsynth.data.sector import crop_to_sector

        image = crop_to_sector(image)
    unit_range = to_unit_range(image, unit, window, normalise_8bit)
    squared = pad_square_resize(convert_channels(unit_range, channels), size)
    return np.clip(np.rint(squared * 255.0), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def preprocess_dataset(
    manifest_path: str | Path,
    root: str | Path,
    out_dir: str | Path,
    *,
    window: tuple[float, float] = (-600, 1500),
    normalise_8bit: str = "percentile",
    channels: int = 1,
    size: int = 64,
    crop_sector: bool = False,
    progress: bool = True,
) -> dict:
    """Write ``<out_dir>/{train,val,test}.pt`` and ``summary.json`` from a manifest.

    Each ``.pt`` holds ``images`` (uint8 ``(N, C, S, S)``), ``labels`` (int64 indices
    into ``classes``), ``classes`` (sorted class names), ``ids`` and ``patients``.
    """
    manifest = read_manifest(manifest_path)
    if manifest.empty:
        raise InputDataError(manifest_path, "the manifest has no slices", "check the dataset path and class folders")
    check_no_leakage(manifest)
    classes = sorted(manifest["class"].unique())
    out_dir = Path(out_dir)
    mat_options = mat_reload_options(manifest_path, manifest)  # .mat clips: the array and layout the scan read (files.csv)
    arrays = []
    for _, row in progress_bar(manifest.iterrows(), total=len(manifest), desc="preprocess", unit="slice",
                               disable=not progress):
        options = mat_options.get(row["source"]) if row["format"] == "lus_mat" else None
        if options:
            image = load_frame(root, row, **options)
        else:
            image = load_image(root, row)
        arrays.append(preprocess_slice(image, row["unit"], window=window, normalise_8bit=normalise_8bit,
                                       channels=channels, size=size, crop_sector=crop_sector))
    stacked = torch.from_numpy(np.stack(arrays))
    summary: dict = {"classes": classes, "size": size, "channels": channels, "window": list(window),
                     "normalise_8bit": normalise_8bit, "counts": {}}
    for split in SPLITS:
        rows = np.flatnonzero(manifest["split"].to_numpy() == split)
        labels = torch.tensor([classes.index(c) for c in manifest["class"].iloc[rows]], dtype=torch.int64)
        torch_save(out_dir / f"{split}.pt", {
            "images": stacked[rows].clone(),
            "labels": labels,
            "classes": classes,
            "ids": manifest["id"].iloc[rows].tolist(),
            "patients": manifest["patient"].iloc[rows].tolist(),
        })
        summary["counts"][split] = {c: int((labels == i).sum()) for i, c in enumerate(classes)}
        summary["counts"][split]["patients"] = int(manifest["patient"].iloc[rows].nunique())
    write_json(out_dir / "summary.json", summary)
    log.info("preprocessed %d slices: %s", len(manifest), summary["counts"])
    return summary


def load_split(path: str | Path) -> dict:
    """Load a ``{split}.pt`` file written by :func:`preprocess_dataset`."""
    from lungsynth.artifacts import torch_load

    return torch_load(path)


def class_images(split: dict, label: str) -> torch.Tensor:
    """uint8 images of one class from a loaded split; an empty class is an error naming it."""
    if label not in split["classes"]:
        raise InputDataError("preprocessed data", f"class '{label}' is not in the dataset (classes: {', '.join(split['classes'])})",
                             "fix dcgan.classes or the dataset's class folders")
    images = split["images"][split["labels"] == split["classes"].index(label)]
    if len(images) == 0:
        raise InputDataError("preprocessed data", f"class '{label}' has no training images",
                             "add images of that class or remove it from dcgan.classes")
    return images


def uint8_image_batch(images, name: str = "images") -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ValueError(f"{name} must be uint8 (N, C, S, S) or (N, S, S), got {x.dtype} {tuple(x.shape)}")
    return x


def decode_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 tensor in 0..255 -> float32 in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def encode_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float tensor in [-1, 1] -> uint8 in 0..255 (rounded, clipped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
