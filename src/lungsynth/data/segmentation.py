"""Segmentation-conditioned data: label maps, derived lung masks, cached pairs, paired augmentation.

Label map convention (every function here): uint8 ``(H, W)`` (or ``(N, H, W)``)

* 0 = outside the lung,
* 1 = lung without lesion,
* 2 = ground-glass opacity,
* 3 = consolidation.

Lesion pixels count as lung even where the lung mask misses them. Infection masks
as read (:func:`lungsynth.data.readers.load_mask`) hold 0 background, 1 ground-glass,
2 consolidation; lung masks are nonzero inside the lung. A conditional GAN gets
the map as :func:`one_hot` channels ``(N, 4, H, W)``.

Datasets without lung masks (COVID-SemiSeg) get one from :func:`derive_lung_mask`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from lungsynth.errors import InputDataError
from lungsynth.data.ingest import read_manifest
from lungsynth.artifacts import torch_load, torch_save, write_json
from lungsynth.data.preprocess import convert_channels, preprocess_slice, to_unit_range
from lungsynth.data.readers import load_image, load_mask
from lungsynth.runlog import progress_bar
from lungsynth.data.splits import check_no_leakage
from lungsynth.metrics.segmentation import mask_dice

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
N_LABELS = 4
LABEL_NAMES = ("background", "lung", "ground_glass", "consolidation")
LUNG_MASK_MODES = ("given", "derive", "auto")

LUNG_WINDOW = (-1000.0, 200.0)
"""HU window (low, high) used to derive lung masks from HU slices, whatever the image window."""

LUNG_MASK_METHOD = (
    "classical: Gaussian smoothing, Otsu threshold (dark = air/lung), dark components kept when at least half "
    "of their area lies inside the convex hull of the large bright (body) components and their area is at "
    "least 0.5% of the image (the 2 largest plus any touching infection), infection pixels added, per-component "
    "closing with a disk of 2% of the image side, holes under 0.3% of the image filled"
)


# --------------------------------------------------------------------------- label maps


def label_map(infection: np.ndarray, lung: np.ndarray | None) -> np.ndarray:
    """Infection mask (0/1/2) + lung mask (nonzero = lung) ``(H, W)`` -> uint8 label map 0..3.

    ``lung=None`` means no lung pixels besides the lesions. Other infection values
    are a ``ValueError`` naming them.
    """
    infection = np.asarray(infection)
    unknown = sorted(int(v) for v in np.unique(infection) if v not in (0, 1, 2))
    if unknown:
        raise ValueError(f"infection mask has unknown values {unknown}; expected 0 background, "
                         "1 ground-glass, 2 consolidation")
    out = np.zeros(infection.shape, dtype=np.uint8)
    if lung is not None:
        lung = np.asarray(lung)
        if lung.shape != infection.shape:
            raise ValueError(f"lung mask shape {lung.shape} differs from infection mask shape {infection.shape}")
        out[lung != 0] = 1
    out[infection == 1] = 2
    out[infection == 2] = 3
    return out


def one_hot(labels: torch.Tensor | np.ndarray, n_labels: int = N_LABELS) -> torch.Tensor:
    """Integer label maps ``(N, H, W)`` or ``(H, W)`` -> float32 one-hot ``(N, n_labels, H, W)``.

    Values outside ``0..n_labels-1`` are a ``ValueError`` naming them.
    """
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
        raise ValueError(f"label maps must be an integer tensor, got {labels.dtype}")
    if labels.dim() == 2:
        labels = labels[None]
    if labels.dim() != 3:
        raise ValueError(f"label maps must be (N, H, W) or (H, W), got shape {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_labels):
        values = labels.unique().tolist()
        unknown = [v for v in values if not 0 <= v < n_labels]
        raise ValueError(f"label maps hold unknown values {unknown}; expected 0..{n_labels - 1}")
    return F.one_hot(labels, n_labels).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def lung_region(labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Label maps (any shape) -> bool tensor, True where the label is lung or lesion (>= 1)."""
    return torch.as_tensor(labels) >= 1


# --------------------------------------------------------------------------- lung mask derivation


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx * xx + yy * yy <= radius * radius


@dataclass(frozen=True)
class LungMaskTuning:
    """Sizes of :func:`derive_lung_mask`, as fractions of the image side (``*_frac`` of a length) or area."""

    smooth_frac: float = 0.003  # Gaussian sigma / side
    min_area_frac: float = 0.005  # smallest lung component / area
    body_min_frac: float = 0.01  # smallest body component / area
    close_frac: float = 0.02  # closing disk radius / side
    hole_frac: float = 0.003  # largest hole filled / area
    max_lungs: int = 2  # lung components kept (plus any holding infection)


def derive_lung_mask(image: np.ndarray, infection: np.ndarray | None = None,
                     tuning: LungMaskTuning = LungMaskTuning()) -> np.ndarray:
    """Classical lung mask of one slice: float ``(H, W)`` in [0, 1] (lung dark) -> bool ``(H, W)``.

    Works for HU slices scaled with :data:`LUNG_WINDOW` and for normalised 8-bit
    slices, also when the image is cropped so that the lungs touch its border:

    1. Gaussian smoothing (sigma = ``smooth_frac`` x image side, at least 0.5 px);
       Otsu threshold; dark = air and lung, bright = body.
    2. Body = bright components of at least ``body_min_frac`` of the image (and the
       largest); its convex hull marks the inside of the patient.
    3. Candidates = connected components of dark pixels (joined with the infection
       pixels, which are dense); a component at least half inside the hull is
       lung, one mostly outside is air around the patient. Components smaller than
       ``min_area_frac`` of the image (trachea, bowel gas, markers) are dropped;
       the ``max_lungs`` largest are kept, plus any lung component holding infection.
    4. Infection pixels are added; each component is closed with a disk of radius
       ``close_frac`` x side (vessels at the hilum, pleural lesions); enclosed
       holes smaller than ``hole_frac`` of the image (vessels) are filled, larger
       ones (a diaphragm dome seen inside the lung) are kept out.

    ``infection``: optional mask of the same shape, nonzero = lesion; ``tuning``: the sizes named
    above (:class:`LungMaskTuning`).
    """
    smooth_frac, min_area_frac, body_min_frac = tuning.smooth_frac, tuning.min_area_frac, tuning.body_min_frac
    close_frac, hole_frac, max_lungs = tuning.close_frac, tuning.hole_frac, tuning.max_lungs
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"derive_lung_mask needs a 2-D (H, W) image, got shape {image.shape}")
    h, w = image.shape
    lesion = np.zeros((h, w), dtype=bool)
    if infection is not None:
        lesion = np.asarray(infection) != 0
        if lesion.shape != image.shape:
            raise ValueError(f"infection mask shape {lesion.shape} differs from image shape {image.shape}")
    side = max(h, w)
    smooth = ndi.gaussian_filter(image, max(0.5, smooth_frac * side))
    if float(smooth.max() - smooth.min()) < 1e-6:
        return lesion.copy()
    from skimage.filters import threshold_otsu
    from skimage.morphology import convex_hull_image

    dark = smooth < threshold_otsu(smooth)

    bright_labels, n_bright = ndi.label(~dark, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(bright_labels.ravel(), minlength=n_bright + 1)
    sizes[0] = 0
    body = sizes >= body_min_frac * h * w
    if n_bright:
        body[int(np.argmax(sizes))] = True
    body[0] = False
    hull = convex_hull_image(body[bright_labels]) if body.any() else np.ones((h, w), dtype=bool)

    cand_labels, n_cand = ndi.label(dark | lesion)
    index = np.arange(1, n_cand + 1)
    area = np.bincount(cand_labels.ravel(), minlength=n_cand + 1)[1:]
    inside = np.bincount(cand_labels.ravel(), weights=hull.ravel(), minlength=n_cand + 1)[1:]
    touches = np.bincount(cand_labels.ravel(), weights=lesion.ravel(), minlength=n_cand + 1)[1:] > 0
    in_body = inside >= 0.5 * area
    ok = in_body & (area >= min_area_frac * h * w)
    ranked = index[ok][np.argsort(-area[ok], kind="stable")]
    keep = np.zeros(n_cand + 1, dtype=bool)
    keep[ranked[:max_lungs]] = True
    keep[index[touches & in_body]] = True  # outside air is never pulled in, even next to a lesion
    mask = keep[cand_labels] | lesion

    radius = max(1, int(round(close_frac * side)))
    footprint = _disk(radius)
    parts, _ = ndi.label(mask)
    closed = np.zeros_like(mask)
    for k, region in enumerate(ndi.find_objects(parts), start=1):
        # close each lung on its own so that the two lungs do not merge across the mediastinum
        y0, y1 = max(region[0].start - radius, 0), min(region[0].stop + radius, h)
        x0, x1 = max(region[1].start - radius, 0), min(region[1].stop + radius, w)
        part = np.pad(parts[y0:y1, x0:x1] == k, radius)
        part = ndi.binary_closing(part, structure=footprint)[radius:-radius, radius:-radius]
        closed[y0:y1, x0:x1] |= part
    holes = ndi.binary_fill_holes(closed) & ~closed
    hole_labels, n_holes = ndi.label(holes)
    small = np.bincount(hole_labels.ravel(), minlength=n_holes + 1) < hole_frac * h * w
    small[0] = False
    return closed | small[hole_labels]


# --------------------------------------------------------------------------- caching


def pad_resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W)`` label map -> ``(size, size)``: centred square padding with 0, nearest neighbour.

    Same geometry as :func:`lungsynth.data.preprocess.pad_square_resize`, so labels stay
    aligned with the image and keep their exact values.
    """
    from skimage.transform import resize

    h, w = labels.shape
    side = max(h, w)
    if h != w:
        padded = np.zeros((side, side), dtype=labels.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        padded[top : top + h, left : left + w] = labels
        labels = padded
    if side != size:
        labels = resize(labels, (size, size), order=0, anti_aliasing=False, preserve_range=True)
    return np.asarray(labels).astype(np.uint8)


def lung_mask_image(image: np.ndarray, unit: str) -> np.ndarray:
    """``(H, W, C)`` slice as read (HU or 0..255) -> float ``(H, W)`` in [0, 1] for :func:`derive_lung_mask`.

    HU: :data:`LUNG_WINDOW`; 8-bit: 0.5..99.5 percentile stretch; RGB -> luma.
    """
    unit_range = to_unit_range(image, unit, LUNG_WINDOW, "percentile")
    return convert_channels(unit_range, 1)[:, :, 0]


def _empty_split(size: int) -> dict[str, Any]:
    return {"images": torch.zeros((0, 1, size, size), dtype=torch.uint8),
            "labels": torch.zeros((0, size, size), dtype=torch.uint8),
            "ids": [], "patients": [], "lung_source": []}


def preprocess_segmentation(
    manifest_path: str | Path,
    root: str | Path,
    out_dir: str | Path,
    *,
    window: tuple[float, float] = (-600, 1500),
    normalise_8bit: str = "percentile",
    size: int = 64,
    lung_mask: str = "auto",
    require_infection: bool = True,
    progress: bool = True,
) -> dict:
    """Write ``<out_dir>/{train,val,test}.pt`` and ``summary.json`` of image/label-map pairs.

    Each ``.pt`` holds ``images`` uint8 ``(N, 1, S, S)`` (as
    :func:`lungsynth.data.preprocess.preprocess_slice`: ``window`` for HU, ``normalise_8bit``
    for 8-bit, gray), ``labels`` uint8 ``(N, S, S)`` with values 0..3 (module
    docstring; padded with 0, nearest-neighbour resize), ``ids``, ``patients`` and
    ``lung_source`` ("given" or "derived" per slice).

    ``lung_mask``: ``"given"`` needs every slice's lung mask; ``"derive"`` always
    derives one (:func:`derive_lung_mask` at the source resolution) and records
    the Dice against a given mask where one exists; ``"auto"`` uses the given
    mask where present, else derives. ``require_infection`` drops slices whose
    infection mask is empty. Every slice needs an infection mask. Nothing is
    written unless every slice was processed and the train split is non-empty.
    Returns the summary.
    """
    if lung_mask not in LUNG_MASK_MODES:
        raise ValueError(f"lung_mask must be one of {list(LUNG_MASK_MODES)}, got {lung_mask!r}")
    manifest = read_manifest(manifest_path)
    if manifest.empty:
        raise InputDataError(manifest_path, "the manifest has no slices", "check the dataset path")
    check_no_leakage(manifest)
    root = Path(root)
    out_dir = Path(out_dir)
    per_split: dict[str, dict[str, list]] = {s: {"images": [], "labels": [], "ids": [], "patients": [],
                                                 "lung_source": []} for s in SPLITS}
    dropped = {s: 0 for s in SPLITS}
    dice_scores: list[float] = []
    for _, row in progress_bar(manifest.iterrows(), total=len(manifest), desc="preprocess seg", unit="slice",
                               disable=not progress):
        split = row["split"]
        if split not in per_split:
            raise InputDataError(manifest_path, f"slice {row['id']!r} has unknown split {split!r}",
                                 "re-run the ingest step")
        image_path = root / row["source"]
        infection = load_mask(root, row, "mask")
        if infection is None:
            raise InputDataError(image_path, "slice has no infection mask",
                                 "this branch needs infection masks: use a dataset with per-slice lesion masks "
                                 "(nifti infection_masks/ or paired_folder GT/)")
        image = load_image(root, row)
        if infection.shape != image.shape[:2]:
            raise InputDataError(root / row["mask"], f"infection mask shape {infection.shape} differs from image "
                                 f"{image_path} shape {image.shape[:2]} (rows, columns)",
                                 "resample the mask to the image grid (nearest neighbour) or fix the pairing")
        bad = sorted(int(v) for v in np.unique(infection) if v > 2)
        if bad:
            raise InputDataError(root / row["mask"], f"infection mask has unknown values {bad}",
                                 "store 0 background, 1 ground-glass, 2 consolidation")
        if require_infection and not infection.any():
            dropped[split] += 1
            continue
        given = load_mask(root, row, "lung_mask")
        if given is not None and given.shape != image.shape[:2]:
            raise InputDataError(root / row["lung_mask"], f"lung mask shape {given.shape} differs from image "
                                 f"{image_path} shape {image.shape[:2]} (rows, columns)",
                                 "resample the mask to the image grid (nearest neighbour) or fix the pairing")
        if lung_mask == "given" and given is None:
            raise InputDataError(image_path, "slice has no lung mask (lung_mask: given)",
                                 "add lung masks or set lung_mask to auto or derive")
        if lung_mask == "derive" or given is None:
            lung = derive_lung_mask(lung_mask_image(image, row["unit"]), infection)
            if given is not None:
                dice_scores.append(mask_dice(lung, given != 0))
            source = "derived"
        else:
            lung, source = given != 0, "given"
        cached = per_split[split]
        cached["images"].append(preprocess_slice(image, row["unit"], window=window, normalise_8bit=normalise_8bit,
                                                 channels=1, size=size))
        cached["labels"].append(pad_resize_labels(label_map(infection, lung), size))
        cached["ids"].append(row["id"])
        cached["patients"].append(row["patient"])
        cached["lung_source"].append(source)
    if not per_split["train"]["ids"]:
        what = "with infection " if require_infection else ""
        raise InputDataError(manifest_path, f"no slices {what}in the train split "
                             f"({dropped['train']} train slices had an empty infection mask)",
                             "add slices with lesions to the train split, or check the infection masks "
                             "and the split fractions")
    if any(dropped.values()):
        log.info("dropped %d slices with an empty infection mask: %s", sum(dropped.values()), dropped)
    outputs: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {
        "size": size, "window": list(window), "normalise_8bit": normalise_8bit, "labels": list(LABEL_NAMES),
        "require_infection": require_infection, "counts": {}, "label_fractions": {},
        "lung_mask": {"mode": lung_mask, "method": LUNG_MASK_METHOD, "lung_window": list(LUNG_WINDOW),
                      "given": 0, "derived": 0},
    }
    for split in SPLITS:
        cached = per_split[split]
        if cached["ids"]:
            data = {"images": torch.from_numpy(np.stack(cached["images"])),
                    "labels": torch.from_numpy(np.stack(cached["labels"])),
                    "ids": cached["ids"], "patients": cached["patients"], "lung_source": cached["lung_source"]}
        else:
            data = _empty_split(size)
        outputs[split] = data
        counts = torch.bincount(data["labels"].flatten().long(), minlength=N_LABELS).double()
        total = float(counts.sum())
        summary["label_fractions"][split] = {name: (float(counts[i]) / total if total else 0.0)
                                             for i, name in enumerate(LABEL_NAMES)}
        summary["counts"][split] = {"slices": len(data["ids"]), "patients": len(set(data["patients"])),
                                    "dropped_without_infection": dropped[split]}
        for source in data["lung_source"]:
            summary["lung_mask"][source] += 1
    if dice_scores:
        summary["lung_dice"] = {"mean": float(np.mean(dice_scores)), "min": float(np.min(dice_scores)),
                                "n": len(dice_scores)}
    for split in SPLITS:
        torch_save(out_dir / f"{split}.pt", outputs[split])
    write_json(out_dir / "summary.json", summary)
    log.info("segmentation pairs: %s; lung masks %s", summary["counts"], summary["lung_mask"])
    return summary


def load_segmentation_split(path: str | Path) -> dict:
    """Load a ``{split}.pt`` written by :func:`preprocess_segmentation`."""
    return torch_load(path)


# --------------------------------------------------------------------------- paired augmentation


def _smooth_fields(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (std ``sigma`` px, periodic) of ``(B, C, S, S)`` unit white noise, rescaled to unit std.

    Done in the Fourier domain; by Parseval the blurred noise has variance
    ``mean(|H|^2)`` for the transfer function ``H``, which is divided out.
    """
    s = noise.shape[-1]
    fy = torch.fft.fftfreq(s, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(s, dtype=torch.float64)[None, :]
    transfer = torch.exp(-2.0 * math.pi**2 * sigma**2 * (fx**2 + fy**2))
    # power over the full spectrum: rfft columns other than 0 (and s/2 for even s) stand for two frequencies
    weights = torch.full((1, fx.shape[1]), 2.0, dtype=torch.float64)
    weights[0, 0] = 1.0
    if s % 2 == 0:
        weights[0, -1] = 1.0
    power = float((transfer**2 * weights).sum()) / (s * s)
    blurred = torch.fft.irfft2(torch.fft.rfft2(noise) * (transfer / math.sqrt(power)).to(torch.float32), s=(s, s))
    return blurred


def _sample_generator(seed: int, index: int) -> torch.Generator:
    """Generator of output sample ``index``: splitmix64 of (seed, index), so batching does not matter."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(index) + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return torch.Generator().manual_seed(z ^ (z >> 31))


def augment_pairs(
    images: torch.Tensor,
    labels: torch.Tensor,
    count: int,
    *,
    seed: int,
    scale: tuple[float, float] = (1.0, 1.25),
    rotation_deg: float = 10.0,
    noise_std: float = 0.02,
    elastic_alpha: float = 1.5,
    elastic_sigma: float = 6.0,
    include_originals: bool = True,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jointly augment image/label-map pairs; returns ``count`` new pairs.

    Args:
        images: uint8 ``(N, 1, S, S)``. labels: uint8 ``(N, S, S)`` (any label values).
        count: number of outputs.
        seed: all randomness comes from it (same result for any ``batch_size``).
        scale: zoom-in factor range; a crop of side ``S / zoom`` at a random position
            is resized back to ``S``. ``(1, 1)`` disables.
        rotation_deg: rotation uniform in ``[-rotation_deg, rotation_deg]`` degrees.
        noise_std: Gaussian noise std in [0, 1] image units, image only.
        elastic_alpha: RMS displacement of the elastic field in pixels (0 disables).
        elastic_sigma: smoothness (Gaussian std) of the elastic field in pixels.
        include_originals: the first ``min(N, count)`` outputs are the inputs unchanged.
        batch_size: samples warped per ``grid_sample`` call (memory only).

    Zoom, crop, rotation and elastic displacement form one sampling grid per
    sample: bilinear for the image (outside filled with the image's minimum),
    nearest for the labels (outside = 0), so label values stay exact. Sources of
    the augmented outputs cycle through shuffled passes over the inputs.

    Returns:
        ``(images uint8 (count, 1, S, S), labels uint8 (count, S, S), source_index int64 (count,))``.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (N, 1, S, S), got {tuple(images.shape)}")
    n, _, s, _ = images.shape
    if labels.shape != (n, s, s):
        raise ValueError(f"labels must be (N, S, S) = {(n, s, s)}, got {tuple(labels.shape)}")
    if images.dtype != torch.uint8 or labels.dtype != torch.uint8:
        raise ValueError(f"images and labels must be uint8, got {images.dtype} and {labels.dtype}")
    if count < 0 or n == 0 and count > 0:
        raise ValueError(f"cannot make {count} samples from {n} inputs")
    low, high = (float(v) for v in scale)
    if not 1.0 <= low <= high:
        raise ValueError(f"scale must be (low, high) with 1 <= low <= high, got {scale}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    n_orig = min(n, count) if include_originals else 0
    n_aug = count - n_orig
    gen = torch.Generator().manual_seed(int(seed))
    passes = -(-n_aug // n) if n_aug else 0
    source_aug = (torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])[:n_aug]
                  if passes else torch.zeros(0, dtype=torch.int64))
    zoom = low + (high - low) * torch.rand(n_aug, generator=gen, dtype=torch.float64)
    angle = torch.deg2rad((2 * torch.rand(n_aug, generator=gen, dtype=torch.float64) - 1) * float(rotation_deg))
    shift = (2 * torch.rand(n_aug, 2, generator=gen, dtype=torch.float64) - 1) * (1 - 1 / zoom)[:, None]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # source = A @ output + shift in normalised [-1, 1] (x, y) coordinates
    affine = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1).to(torch.float32)
    shift = shift.to(torch.float32)

    centres = (torch.arange(s, dtype=torch.float32) * 2 + 1) / s - 1
    grid_y, grid_x = torch.meshgrid(centres, centres, indexing="ij")
    base = torch.stack([grid_x, grid_y], dim=-1)  # (S, S, 2) x, y

    out_images = torch.empty((count, 1, s, s), dtype=torch.uint8)
    out_labels = torch.empty((count, s, s), dtype=torch.uint8)
    out_images[:n_orig] = images[:n_orig]
    out_labels[:n_orig] = labels[:n_orig]
    use_elastic = elastic_alpha > 0 and elastic_sigma > 0
    for start in range(0, n_aug, batch_size):
        stop = min(start + batch_size, n_aug)
        src = source_aug[start:stop]
        grid = torch.einsum("bij,hwj->bhwi", affine[start:stop], base) + shift[start:stop, None, None, :]
        fields, noise = [], []
        for k in range(start, stop):
            sample_gen = _sample_generator(seed, n_orig + k)
            if use_elastic:
                fields.append(torch.randn((2, s, s), generator=sample_gen))
            if noise_std > 0:
                noise.append(torch.randn((1, s, s), generator=sample_gen))
        if use_elastic:
            disp = _smooth_fields(torch.stack(fields), float(elastic_sigma)) * (float(elastic_alpha) * 2.0 / s)
            grid = grid + disp.permute(0, 2, 3, 1)
        pixels = images[src].to(torch.float32) / 255.0
        floor = pixels.amin(dim=(1, 2, 3), keepdim=True)
        warped = F.grid_sample(pixels - floor, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False) + floor
        if noise_std > 0:
            warped = warped + float(noise_std) * torch.stack(noise)
        out_images[n_orig + start : n_orig + stop] = torch.round(warped.clamp(0, 1) * 255.0).to(torch.uint8)
        warped_labels = F.grid_sample(labels[src, None].to(torch.float32), grid, mode="nearest",
                                      padding_mode="zeros", align_corners=False)
        out_labels[n_orig + start : n_orig + stop] = warped_labels[:, 0].round().to(torch.uint8)
    source = torch.cat([torch.arange(n_orig, dtype=torch.int64), source_aug.to(torch.int64)])
    return out_images, out_labels, source


# --------------------------------------------------------------------------- compositing


def composite(real: torch.Tensor, synthetic: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 1, S, S)`` real and synthetic + bool lung ``(N, S, S)`` -> uint8 ``(N, 1, S, S)``.

    Synthetic pixels inside the lung, the real image bit-identical elsewhere.
    """
    real = torch.as_tensor(real)
    synthetic = torch.as_tensor(synthetic)
    lung = torch.as_tensor(lung)
    if real.shape != synthetic.shape or real.dim() != 4 or real.shape[1] != 1:
        raise ValueError(f"real and synthetic must both be (N, 1, S, S), got {tuple(real.shape)} and "
                         f"{tuple(synthetic.shape)}")
    if lung.shape != (real.shape[0], *real.shape[2:]):
        raise ValueError(f"lung must be (N, S, S) = {(real.shape[0], *real.shape[2:])}, got {tuple(lung.shape)}")
    if real.dtype != torch.uint8 or synthetic.dtype != torch.uint8:
        raise ValueError(f"real and synthetic must be uint8, got {real.dtype} and {synthetic.dtype}")
    return torch.where(lung.to(torch.bool)[:, None], synthetic, real)


def label_map_batch(labels, images: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(labels)
    if y.ndim == 4 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels must have shape {(images.shape[0], *images.shape[2:])}, got {tuple(y.shape)}")
    return y
