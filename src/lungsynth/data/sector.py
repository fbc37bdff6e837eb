"""Sector cropping of lung-ultrasound frames (preprocessing): find the bright fan, crop to it, pad to a size.

Frames are ``(H, W)`` or ``(H, W, C)`` arrays with values 0..255 (as
:func:`lungsynth.data.readers.load_frame` returns them, float32); the crop keeps
dtype and channel layout. Strongly coloured pixels (colour bars, markers) do
not count as sector.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["sector_bbox", "crop_to_sector", "center_pad"]


def _gray_for_sector(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` -> float gray with strongly coloured pixels (overlays) set to 0."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        return img
    if img.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    if img.shape[2] == 1:
        return img[..., 0]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    gray = (r + g + b) / 3.0
    colour = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    gray[colour > 40.0] = 0.0
    return gray


def sector_bbox(image: np.ndarray, *, threshold: float = 8.0) -> tuple[int, int, int, int]:
    """Bounding box ``(top, bottom, left, right)`` of the ultrasound sector (bottom/right exclusive).

    ``image``: ``(H, W)`` or ``(H, W, C)``, values 0..255. Strongly coloured
    pixels (colour bars, markers) are ignored; the gray image is downsampled
    by an integer step to <= 256 px, smoothed (3x3 mean + Gaussian, sigma 1.5)
    and thresholded at ``threshold``; the largest connected region is the
    sector, and the box covers its pixels above ``threshold`` before smoothing
    (exact to the pixel at step 1, to ``step`` px for larger images).
    Text or markers separated from the sector by a gap of a few pixels are
    left out. Returns the whole image when nothing exceeds ``threshold``.
    """
    arr = np.asarray(image)
    h, w = arr.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / 256)))
    small = _gray_for_sector(arr[::step, ::step])
    smooth = ndimage.gaussian_filter(ndimage.uniform_filter(small, 3), 1.5)
    mask = smooth > threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0, h, 0, w
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == int(np.argmax(sizes)) + 1  # holes (dark lung) do not change the box
    # the raw (unsmoothed) pixels above threshold in that region: smoothing widens the region
    inner = region & (small > threshold)
    if not inner.any():
        inner = region
    rows = np.flatnonzero(inner.any(axis=1))
    cols = np.flatnonzero(inner.any(axis=0))
    top, bottom = rows[0] * step, min(h, (rows[-1] + 1) * step)
    left, right = cols[0] * step, min(w, (cols[-1] + 1) * step)
    return int(top), int(bottom), int(left), int(right)


def crop_to_sector(image: np.ndarray, *, threshold: float = 8.0) -> np.ndarray:
    """``image`` cropped to :func:`sector_bbox` (same dtype and channel layout)."""
    top, bottom, left, right = sector_bbox(image, threshold=threshold)
    return image[top:bottom, left:right]


def center_pad(image: np.ndarray, size_hw: tuple[int, int], *, fill: float = 0.0) -> np.ndarray:
    """Pad ``(H, W[, C])`` with ``fill`` to ``size_hw`` centred (extra pixel bottom/right); centre-crop where larger."""
    th, tw = int(size_hw[0]), int(size_hw[1])
    h, w = image.shape[:2]
    top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
    image = image[top:top + th, left:left + tw]
    h, w = image.shape[:2]
    out = np.full((th, tw, *image.shape[2:]), fill, dtype=image.dtype)
    oy, ox = (th - h) // 2, (tw - w) // 2
    out[oy:oy + h, ox:ox + w] = image
    return out
