"""Procedural chest CT phantom: the default dataset of the lungsynth pipeline.

Every patient is a short stack of axial slices in Hounsfield units (HU) with a
lung mask and an infection mask (0 background, 1 ground-glass opacity,
2 consolidation). Anatomy is drawn from per-patient random parameters in a
normalised in-plane frame ``u`` (``x, y`` in ``[-1, 1]`` across the field of
view; ``x`` grows towards the patient's left, ``y`` towards posterior) and a
lung height coordinate ``t`` (0 at the lung bases, 1 at the apices):

* air outside the body (-1000), a curved patient table below it;
* body with subcutaneous fat (~-100), muscle (~50), ribs (cortex ~800, marrow
  ~250, costal cartilage ~150), sternum, scapulae and a vertebra (body ~230
  with ~750 cortex, intervertebral discs, spinal canal, posterior elements);
* mediastinum: fat, heart, aorta, pulmonary trunk, oesophagus, trachea / main
  bronchi, diaphragmatic domes with liver and spleen at the bases;
* two lungs (parenchyma ~-850 with texture and a gravity gradient) holding a
  3-D branching, tapering vessel tree with bronchovascular airways;
* COVID patients only: multifocal, peripheral- and posterior-predominant
  ground-glass opacities (~-700..-300, soft edges, vessels visible through
  them) and smaller consolidations (~-100..+100), inside the lungs only.

The anatomy, vessel tree and image noise of a patient depend only on
``(seed, index)``; the class only adds lesions. A classifier therefore can
learn COVID vs. non-COVID from the lesions and from nothing else.

Slices are blurred with a Gaussian "reconstruction kernel" and receive
correlated noise *after* all tissues (lesions included) were drawn, so the
infection mask marks the voxels whose attenuation was changed by a lesion
before blur and noise.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungsynth.artifacts import atomic_folder
from lungsynth.phantom import CT_CLASSES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["CLASSES", "PhantomVolume", "generate_patient", "write_phantom_ct"]

CLASSES: tuple[str, str] = CT_CLASSES

HU_MIN = -1024
"""Lowest stored HU (stored pixel value 0)."""
HU_MAX = 3071
"""Highest stored HU (stored pixel value 4095, 12 bits)."""
RESCALE_INTERCEPT = -1024

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_UID_NAMESPACE = "lungsynth-phantom-ct-v1"

# Random streams of a patient: default_rng([seed, index, stream]).
_STREAM_ANATOMY, _STREAM_VESSELS, _STREAM_LESIONS, _STREAM_NOISE = 0, 1, 2, 3
_STREAM_ORDER = 0x5EED  # default_rng([seed, _STREAM_ORDER]) orders the classes

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class PhantomVolume:
    """One synthetic patient.

    Attributes
    ----------
    patient_id:
        Synthetic identifier ``"PH%04d" % index``.
    label:
        ``"covid"`` or ``"noncovid"``.
    hu:
        ``int16 (S, H, W)`` Hounsfield units in ``[-1024, 3071]``; axial slices
        in display orientation (row 0 anterior, column 0 the patient's right,
        slice 0 most inferior).
    lung_mask:
        ``uint8 (S, H, W)``, 1 inside either lung (vessels included).
    infection_mask:
        ``uint8 (S, H, W)``: 0 background, 1 ground-glass, 2 consolidation;
        non-zero only inside ``lung_mask`` and only for COVID patients.
    spacing_mm:
        ``(row, column, slice)`` voxel spacing in millimetres.
    """

    patient_id: str
    label: str
    hu: np.ndarray
    lung_mask: np.ndarray
    infection_mask: np.ndarray
    spacing_mm: tuple[float, float, float]


# --------------------------------------------------------------------------- #
# Small geometric helpers
# --------------------------------------------------------------------------- #


def _smoothstep(v: FloatArray | float) -> FloatArray:
    """Cubic smoothstep of ``v`` clipped to ``[0, 1]``."""
    v = np.clip(v, 0.0, 1.0)
    return v * v * (3.0 - 2.0 * v)


def _superellipse(x: FloatArray, y: FloatArray, a, b, p) -> FloatArray:
    """``|x/a|^p + |y/b|^p`` (< 1 inside the superellipse)."""
    return np.abs(x / a) ** p + np.abs(y / b) ** p


def _ellipse(x, y, cx, cy, a, b, angle: float = 0.0) -> FloatArray:
    """Squared normalised radius of a rotated ellipse (< 1 inside)."""
    dx, dy = x - cx, y - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / a) ** 2 + (v / b) ** 2


def _capsule_dist(x, y, p0: tuple[float, float], p1: tuple[float, float]) -> FloatArray:
    """Distance of points ``(x, y)`` to the segment ``p0 -> p1`` (same units)."""
    ax, ay = p0
    bx, by = p1
    vx, vy = bx - ax, by - ay
    den = vx * vx + vy * vy
    s = np.clip(((x - ax) * vx + (y - ay) * vy) / den, 0.0, 1.0) if den > 0 else 0.0
    return np.hypot(x - ax - s * vx, y - ay - s * vy)


_GRIDS: dict[int, tuple[FloatArray, FloatArray]] = {}


def _grid(n: int) -> tuple[FloatArray, FloatArray]:
    """Pixel-centre coordinates ``(x, y)`` in ``u`` of an ``n x n`` slice, each ``(n, n)``."""
    if n not in _GRIDS:
        c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
        xx, yy = np.meshgrid(c, c)
        xx.setflags(write=False)
        yy.setflags(write=False)
        _GRIDS[n] = (xx, yy)
    return _GRIDS[n]


# --------------------------------------------------------------------------- #
# Per-patient anatomy parameters
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class _Anatomy:
    """Random anatomy of one patient; lengths in ``u`` unless named ``*_mm``."""

    pixel_mm: float
    height_mm: float  # lung base-to-apex height
    t_first: float  # t of the first slice centre
    slice_mm: float
    mm_per_u: float
    # body
    body_a: float
    body_b: float
    body_cy: float
    body_p: float
    fat: float
    muscle: float
    # thoracic cavity
    cav_a: float
    cav_b: float
    cav_cy: float
    cav_p: float
    lung_modes: FloatArray  # (2 sides, 3 modes, [amplitude, phase])
    med_w: float
    # heart and great vessels
    heart_x: float
    heart_y: float
    heart_a: float
    heart_b: float
    heart_angle: float
    heart_top: float
    aorta_r: float
    t_arch: float
    t_carina: float
    # spine
    spine_y: float
    spine_r: float
    disc_phase: float
    # diaphragm domes (index 0: patient's right = image left)
    dome_top: tuple[float, float]
    # ribs
    rib_pitch_mm: float
    rib_drop_mm: float
    rib_phase_mm: tuple[float, float]
    rib_th: float
    # table
    table_gap: float
    # intensities (HU) and image formation
    fat_hu: float
    muscle_hu: float
    lung_hu: float
    lung_gradient_hu: float
    vessel_hu: float
    noise_hu: float
    blur_px: float
    # DICOM demographics (independent of the class)
    age: int
    sex: str

    def t_of_slice(self, s: int) -> float:
        return self.t_first + s * self.slice_mm / self.height_mm

    @property
    def lung_height_u(self) -> float:
        return self.height_mm / self.mm_per_u


def _sample_anatomy(rng: np.random.Generator, slices: int, size: int) -> _Anatomy:
    """Draw the anatomy of one patient (independent of the class)."""
    u = rng.uniform
    fov_mm = u(330.0, 380.0)
    pixel_mm = round(fov_mm / size, 4)
    mm_per_u = pixel_mm * size / 2.0
    height_mm = u(210.0, 260.0)
    t_lo, t_hi = u(0.08, 0.15), u(0.80, 0.88)
    slice_mm = round(min((t_hi - t_lo) * height_mm / slices, 25.0), 2)
    t_first = 0.5 * (t_lo + t_hi) - 0.5 * (slices - 1) * slice_mm / height_mm

    body_a = u(0.80, 0.90)
    body_b = body_a * u(0.66, 0.76)
    body_cy = u(-0.04, 0.03)
    fat = u(0.03, 0.09)
    muscle = u(0.04, 0.065)
    wall = 1.2 * fat + muscle + 0.04
    cav_a = body_a - wall - u(0.0, 0.02)
    cav_b = body_b - wall
    modes = np.stack([u(0.0, 0.03, size=(2, 3)), u(0.0, 2 * np.pi, size=(2, 3))], axis=-1)
    spine_r = u(0.085, 0.105) * body_a / 0.85
    spine_y = body_cy + body_b - fat - u(0.32, 0.35)
    heart_top = u(0.56, 0.64)
    return _Anatomy(
        pixel_mm=pixel_mm,
        height_mm=height_mm,
        t_first=t_first,
        slice_mm=slice_mm,
        mm_per_u=mm_per_u,
        body_a=body_a,
        body_b=body_b,
        body_cy=body_cy,
        body_p=u(2.1, 2.6),
        fat=fat,
        muscle=muscle,
        cav_a=cav_a,
        cav_b=cav_b,
        cav_cy=body_cy - 0.01,
        cav_p=u(2.0, 2.4),
        lung_modes=modes,
        med_w=u(0.045, 0.075),
        heart_x=u(0.07, 0.15),
        heart_y=body_cy - cav_b * u(0.22, 0.32),
        heart_a=cav_a * u(0.40, 0.47),
        heart_b=cav_b * u(0.50, 0.58),
        heart_angle=-math.radians(u(20.0, 40.0)),
        heart_top=heart_top,
        aorta_r=u(0.045, 0.06),
        t_arch=heart_top + u(0.10, 0.14),
        t_carina=heart_top + u(0.0, 0.05),
        spine_y=spine_y,
        spine_r=spine_r,
        disc_phase=u(0.0, 1.0),
        dome_top=(u(0.22, 0.3), u(0.18, 0.26)),
        rib_pitch_mm=u(24.0, 30.0),
        rib_drop_mm=u(85.0, 115.0),
        rib_phase_mm=(u(0.0, 30.0), u(0.0, 30.0)),
        rib_th=u(0.026, 0.034),
        table_gap=u(0.015, 0.05),
        fat_hu=u(-115.0, -85.0),
        muscle_hu=u(40.0, 60.0),
        lung_hu=u(-895.0, -860.0),
        lung_gradient_hu=u(20.0, 45.0),
        vessel_hu=u(30.0, 50.0),
        noise_hu=u(10.0, 20.0),
        blur_px=float(np.clip(0.9 / pixel_mm, 0.45, 1.4)),
        age=int(rng.integers(25, 86)),
        sex=str(rng.choice(["F", "M"])),
    )


# --------------------------------------------------------------------------- #
# Thorax geometry as a function of height t (vectorised over t)
# --------------------------------------------------------------------------- #


def _cavity_axes(an: _Anatomy, t) -> tuple[FloatArray, FloatArray]:
    """Semi-axes of the thoracic cavity at height ``t`` (narrower towards the apex)."""
    apex = _smoothstep((np.asarray(t) - 0.55) / 0.45) ** 1.3
    return an.cav_a * (1.0 - 0.38 * apex), an.cav_b * (1.0 - 0.22 * apex)


def _heart_scale(an: _Anatomy, t) -> FloatArray:
    """Heart size factor in ``[0, 1]``: 1 below ``heart_top - 0.2``, shrinking to 0 at ``heart_top``."""
    return np.sqrt(np.clip((an.heart_top - np.asarray(t)) / 0.2, 0.0, 1.0))


def _dome(an: _Anatomy, t, side: int) -> tuple[float, float, FloatArray, FloatArray]:
    """Diaphragmatic dome below the right (-1, liver) or left (+1, spleen) lung.

    Returns the centre ``(cx, cy)`` and semi-axes ``(rx, ry)`` in ``u`` of its
    cross-section at height ``t`` (zero above the dome top).
    """
    top = an.dome_top[0 if side < 0 else 1]
    grow = np.sqrt(np.clip(1.0 - (np.asarray(t) / top) ** 2, 0.0, 1.0))
    if side < 0:
        return -0.45 * an.cav_a, an.cav_cy, 0.45 * an.cav_a * grow, 0.7 * an.cav_b * grow
    return 0.55 * an.cav_a, an.cav_cy + 0.15 * an.cav_b, 0.36 * an.cav_a * grow, 0.55 * an.cav_b * grow


def _med_half_width(an: _Anatomy, y, t) -> FloatArray:
    """Half-width in ``u`` of the mediastinal band between the lungs.

    Narrow anteriorly (anterior junction line), ``med_w`` around the trachea
    and oesophagus, wider in the superior mediastinum.
    """
    post = _smoothstep((np.asarray(y) - (an.cav_cy - 0.6 * an.cav_b)) / (0.35 * an.cav_b))
    return 0.018 + (an.med_w - 0.018) * post + 0.05 * _smoothstep((np.asarray(t) - 0.62) / 0.3)


def _lungs(an: _Anatomy, x, y, t) -> BoolArray:
    """Whether points ``(x, y, t)`` lie in a lung (right lung ``x < 0``, left ``x > 0``).

    Vectorised over all three arguments; used both for the lung masks and for
    growing the 3-D vessel tree. Small mediastinal structures (ascending
    aorta, trachea, ...) are cut from the mask separately by the renderer.
    """
    x, y, t = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(t, float))
    shape = x.shape
    x, y, t = x.ravel(), y.ravel(), t.ravel()
    a, b = _cavity_axes(an, t)
    dy = y - an.cav_cy
    cand = np.nonzero(_superellipse(x, dy, a, b, an.cav_p) < 1.0)[0]  # inside the cavity
    result = np.zeros(x.size, bool)
    x, y, t, a, b, dy = x[cand], y[cand], t[cand], a[cand], b[cand], dy[cand]
    left = x > 0
    ax = np.abs(x)
    theta = np.arctan2(dy, np.maximum(ax, 1e-9))
    shrink = 0.985
    for k in range(3):  # smooth, patient-specific lung outline
        amp = np.where(left, an.lung_modes[1, k, 0], an.lung_modes[0, k, 0])
        phase = np.where(left, an.lung_modes[1, k, 1], an.lung_modes[0, k, 1])
        shrink = shrink - amp * 0.5 * (1.0 + np.cos((k + 2) * theta + phase))
    inside = _superellipse(ax, dy, a * shrink, b * shrink, an.cav_p) < 1.0
    inside &= ax > _med_half_width(an, y, t)
    # heart (with a pericardial fat margin)
    hs = _heart_scale(an, t)
    hx = an.heart_x * (0.6 + 0.4 * hs)
    heart = _ellipse(x, y, hx, an.heart_y, an.heart_a * hs + 0.02 + 1e-6, an.heart_b * hs + 0.02 + 1e-6, an.heart_angle)
    inside &= ~((heart < 1.0) & (hs > 0))
    # spine and paravertebral soft tissue
    ys, rs = an.spine_y, an.spine_r
    inside &= _ellipse(x, y, 0.0, ys, 1.1 * rs + 0.03, rs + 0.03) > 1.0
    inside &= ~((y > ys) & (ax < 1.1 * rs + 0.03))
    inside &= ~((y > ys + rs + 0.035) & (ax < rs + 0.11))  # behind the transverse processes
    # descending aorta on the left of the spine (below the arch)
    aorta = np.hypot(x - (rs * 1.05 + an.aorta_r), y - (ys - 0.04)) < an.aorta_r + 0.018
    inside &= ~(aorta & (t < an.t_arch + 0.03))
    # diaphragmatic domes
    for side in (-1, 1):
        dcx, dcy, rx, ry = _dome(an, t, side)
        dome = _ellipse(x, y, dcx, dcy, rx + 0.015 + 1e-6, ry + 0.015 + 1e-6) < 1.0
        inside &= ~(dome & (rx > 0) & (left == (side > 0)))
    result[cand] = inside
    return result.reshape(shape)


# --------------------------------------------------------------------------- #
# Vessel tree (3-D, grown once per patient)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class _Tree:
    """Straight vessel segments in ``(x, y, z)`` with ``z = t * lung_height_u``."""

    p0: FloatArray  # (n, 3)
    p1: FloatArray  # (n, 3)
    radius: FloatArray  # (n,) in u
    generation: NDArray[np.int64]  # (n,)


def _lung_points(an: _Anatomy, side: int, count: int, rng: np.random.Generator) -> FloatArray:
    """``(k, 3)`` points ``(x, y, z)`` uniformly inside one lung (``k <= count``)."""
    lz = an.lung_height_u
    cand = np.column_stack(
        [
            side * rng.uniform(0.0, an.cav_a, 6 * count),
            an.cav_cy + rng.uniform(-an.cav_b, an.cav_b, 6 * count),
            rng.uniform(0.0, lz, 6 * count),
        ]
    )
    inside = _lungs(an, cand[:, 0], cand[:, 1], cand[:, 2] / lz)
    return cand[inside][:count]


def _grow_vessels(an: _Anatomy, rng: np.random.Generator, points_per_lung: int = 2500) -> _Tree:
    """Grow a space-filling pulmonary vessel tree from each hilum.

    Volume partitioning (after Kitaoka et al. 1999): every branch supplies a
    set of points sampled uniformly in the lung, heads for their centroid and
    covers 30-55 % of the way there; its point set is then cut in two by a
    plane through the centroid normal to the set's principal axis, one half
    per daughter. Radii follow Murray's law, ``r ~ (supplied points)^(1/3)``,
    so vessels taper from ~5 mm at the hila to ~0.5 mm peripherally.
    """
    p0s, p1s, radii, gens = [], [], [], []
    r_leaf = 0.0026
    for side in (-1, 1):
        pts = _lung_points(an, side, points_per_lung, rng)
        if len(pts) < 4:
            continue
        # all regions of one generation at once: pts[i] belongs to region group[i]
        group = np.zeros(len(pts), np.int64)
        starts = np.array([[side * (an.med_w + 0.08), an.cav_cy + 0.02, 0.55 * an.lung_height_u]])
        gen = 0
        while len(pts):
            g = len(starts)
            k = np.bincount(group, minlength=g).astype(float)
            centre = np.stack([np.bincount(group, pts[:, i], g) for i in range(3)], 1) / k[:, None]
            leaf = k <= 2
            frac = np.where(leaf, 1.0, rng.uniform(0.3, 0.55, g))
            ends = starts + frac[:, None] * (centre - starts)
            p0s.append(starts)
            p1s.append(ends)
            radii.append(r_leaf * np.cbrt(k))
            gens.append(np.full(g, gen))
            keep = ~leaf[group]
            pts, group = pts[keep], group[keep]
            if not len(pts):
                break
            centred = pts - centre[group]
            cov = np.zeros((g, 3, 3))
            for i in range(3):
                for j in range(i, 3):
                    cov[:, i, j] = cov[:, j, i] = np.bincount(group, centred[:, i] * centred[:, j], g)
            axis = np.linalg.eigh(cov)[1][:, :, -1]  # principal axis of each region
            proj = np.einsum("ij,ij->i", centred, axis[group])
            extent = np.zeros(g)
            np.maximum.at(extent, group, np.abs(proj))
            cut = rng.normal(0.0, 0.1, g) * extent
            child = 2 * group + (proj >= cut[group])
            ids, group = np.unique(child, return_inverse=True)
            starts = ends[ids // 2]
            gen += 1
    return _Tree(
        p0=np.concatenate(p0s),
        p1=np.concatenate(p1s),
        radius=np.concatenate(radii),
        generation=np.concatenate(gens).astype(np.int64),
    )


def _draw_capsules(canvas: FloatArray, seg0: FloatArray, seg1: FloatArray, radius: FloatArray) -> None:
    """Max-composite anti-aliased 2-D capsules into the square ``canvas`` (fraction in ``[0, 1]``).

    ``seg0``/``seg1`` are ``(k, 2)`` end points ``(x, y)`` in ``u``, ``radius``
    ``(k,)`` in ``u``. Capsules are rendered in batches of equal box size.
    """
    n = canvas.shape[0]
    scale = n / 2.0
    c0 = (seg0 + 1.0) * scale - 0.5  # (col, row) pixel coordinates
    c1 = (seg1 + 1.0) * scale - 0.5
    rp = radius * scale
    weight = np.minimum(1.0, 2.0 * rp)  # sub-pixel vessels are fainter
    lo = np.floor(np.minimum(c0, c1) - rp[:, None] - 1).astype(np.int64).clip(0, n)
    hi = np.ceil(np.maximum(c0, c1) + rp[:, None] + 2).astype(np.int64).clip(0, n)
    ext = (hi - lo).max(axis=1)
    valid = (hi > lo).all(axis=1)
    flat = canvas.reshape(-1)
    box = 4
    while box // 2 < n + 4:
        sel = np.nonzero(valid & (ext > box // 2) & (ext <= box))[0] if box > 4 else np.nonzero(valid & (ext <= 4))[0]
        offs = np.arange(box)
        box *= 2
        if len(sel) == 0:
            continue
        cols = lo[sel, 0, None] + offs  # (k, B)
        rows = lo[sel, 1, None] + offs
        ax, ay = c0[sel, 0, None, None], c0[sel, 1, None, None]
        vx, vy = (c1[sel, 0] - c0[sel, 0])[:, None, None], (c1[sel, 1] - c0[sel, 1])[:, None, None]
        px = cols[:, None, :] - ax
        py = rows[:, :, None] - ay
        den = np.maximum(vx * vx + vy * vy, 1e-12)
        s_ = np.clip((px * vx + py * vy) / den, 0.0, 1.0)
        dist = np.hypot(px - s_ * vx, py - s_ * vy)
        val = np.clip(rp[sel, None, None] - dist + 0.5, 0.0, 1.0) * weight[sel, None, None]
        ok = (val > 0) & (cols < hi[sel, 0, None])[:, None, :] & (rows < hi[sel, 1, None])[:, :, None]
        idx = rows[:, :, None] * n + cols[:, None, :]
        np.maximum.at(flat, idx[ok], val[ok])


def _vessel_maps(an: _Anatomy, tree: _Tree, t: float, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Vessel, airway-wall and airway-lumen fractions ``(n, n)`` of the slab at height ``t``."""
    lz = an.lung_height_u
    z = t * lz
    half = min(an.slice_mm, 4.0) / 2.0 / an.mm_per_u  # render a thin CT slab
    zlo, zhi = np.minimum(tree.p0[:, 2], tree.p1[:, 2]), np.maximum(tree.p0[:, 2], tree.p1[:, 2])
    pad = half + 0.5 * tree.radius
    sel = np.nonzero((zlo <= z + pad) & (zhi >= z - pad))[0]
    vessels = np.zeros((n, n))
    wall = np.zeros((n, n))
    lumen = np.zeros((n, n))
    if len(sel) == 0:
        return vessels, wall, lumen
    p0, p1, r = tree.p0[sel], tree.p1[sel], tree.radius[sel]
    dz = p1[:, 2] - p0[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = np.where(np.abs(dz) > 1e-9, (z - pad[sel] - p0[:, 2]) / dz, 0.0)
        s1 = np.where(np.abs(dz) > 1e-9, (z + pad[sel] - p0[:, 2]) / dz, 1.0)
    s_lo = np.clip(np.minimum(s0, s1), 0.0, 1.0)[:, None]
    s_hi = np.clip(np.maximum(s0, s1), 0.0, 1.0)[:, None]
    a = p0 + s_lo * (p1 - p0)
    b = p0 + s_hi * (p1 - p0)
    _draw_capsules(vessels, a[:, :2], b[:, :2], r)
    # bronchi run beside the larger arteries (bronchovascular bundles)
    big = r > 0.009
    if big.any():
        seg = b[big, :2] - a[big, :2]
        normal = np.stack([-seg[:, 1], seg[:, 0]], 1)
        norm = np.linalg.norm(normal, axis=1, keepdims=True)
        normal = np.where(norm > 1e-9, normal / np.maximum(norm, 1e-12), np.array([[0.7071, 0.7071]]))
        ra = r[big] * 0.8
        shift = normal * (r[big] + ra + 0.003)[:, None]
        _draw_capsules(wall, a[big, :2] + shift, b[big, :2] + shift, ra)
        _draw_capsules(lumen, a[big, :2] + shift, b[big, :2] + shift, ra * 0.78)
    return vessels, wall, lumen


# --------------------------------------------------------------------------- #
# Lesions (COVID only)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class _Lesion:
    """Irregular 3-D blob; lengths in ``u``, ``z`` as in :class:`_Tree`."""

    kind: int  # 1 ground-glass, 2 consolidation
    centre: FloatArray  # (3,)
    radii: FloatArray  # (3,) tangential, normal, z
    angle: float  # in-plane orientation of the first radius (rad)
    waves: FloatArray  # (3, 3) wave vectors (1/u)
    phases: FloatArray  # (3,)
    hu: float  # target attenuation


def _sample_lesions(
    an: _Anatomy, lungs: list[BoolArray], ts: list[float], n: int, rng: np.random.Generator
) -> list[_Lesion]:
    """Place multifocal, peripheral/posterior/basal-predominant lesions in the lungs."""
    lz = an.lung_height_u
    px_u = 2.0 / n
    areas = np.array([m.sum() for m in lungs], float)
    if areas.sum() == 0:
        return []
    slice_w = areas * (1.35 - np.asarray(ts))
    slice_w /= slice_w.sum()
    xx, yy = _grid(n)
    cache: dict[int, tuple[FloatArray, FloatArray, FloatArray]] = {}

    def site() -> tuple[FloatArray, float]:
        s = int(rng.choice(len(lungs), p=slice_w))
        if s not in cache:
            dist = ndimage.distance_transform_edt(lungs[s]) * px_u
            gy, gx = np.gradient(dist)
            a, b = _cavity_axes(an, ts[s])
            rho = _superellipse(xx, yy - an.cav_cy, a, b, an.cav_p) ** (1.0 / an.cav_p)
            post = np.clip((yy - an.cav_cy + an.cav_b) / (2 * an.cav_b), 0.0, 1.0)
            w = np.exp(-np.clip(1.0 - rho, 0.0, None) / 0.08 - dist / 0.08) * (1.0 + 2.0 * post)
            w = np.where(lungs[s], w, 0.0).ravel()
            cache[s] = (w / w.sum(), gx, gy)
        w, gx, gy = cache[s]
        k = int(rng.choice(w.size, p=w))
        i, j = divmod(k, n)
        # long axis along the pleura: perpendicular to the distance gradient
        angle = math.atan2(gy[i, j], gx[i, j]) + math.pi / 2
        dz = rng.uniform(-0.5, 0.5) * an.slice_mm / an.mm_per_u
        centre = np.array([xx[i, j], yy[i, j], ts[s] * lz + dz]) + np.r_[rng.normal(0, 0.01, 2), 0.0]
        return centre, angle

    def blob(kind: int, centre: FloatArray, angle: float, radii: FloatArray, hu: float) -> _Lesion:
        waves = rng.normal(0.0, 1.0, (3, 3)) * (2.5 / radii.mean())
        return _Lesion(kind, centre, radii, angle, waves, rng.uniform(0, 2 * np.pi, 3), hu)

    mm = an.mm_per_u
    lesions: list[_Lesion] = []
    for _ in range(int(rng.integers(2, 6))):
        centre, angle = site()
        radii = np.array([rng.uniform(0.08, 0.17), rng.uniform(0.05, 0.1), rng.uniform(12.0, 30.0) / mm])
        lesions.append(blob(1, centre, angle, radii, rng.uniform(-580.0, -380.0)))
        if rng.random() < 0.35:  # consolidating core of a ground-glass patch
            core = centre + np.r_[rng.normal(0.0, 0.2, 2) * radii[:2], 0.0]
            lesions.append(blob(2, core, angle, radii * rng.uniform(0.5, 0.65), rng.uniform(20.0, 80.0)))
    if rng.random() < 0.8:
        for _ in range(int(rng.integers(1, 3))):
            centre, angle = site()
            radii = np.array([rng.uniform(0.07, 0.12), rng.uniform(0.05, 0.08), rng.uniform(10.0, 22.0) / mm])
            lesions.append(blob(2, centre, angle, radii, rng.uniform(20.0, 80.0)))
    return lesions


_LESION_RAMP = {1: (0.25, 0.22), 2: (0.4, 0.1)}
"""Per kind: blob field value where the opacity starts, and the width of its ramp to 1."""


def _lesion_alpha(lesions: list[_Lesion], z: float, n: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Lesion opacities on the ``n x n`` slice at height ``z`` (``u``).

    Returns ``(alpha_ggo, alpha_cons, hu_ggo, hu_cons)``, each ``(n, n)``:
    opacities in ``[0, 1]`` (exactly 0 outside every lesion of that kind) and
    the target HU of the most opaque lesion at each pixel.
    """
    xx, yy = _grid(n)
    alpha = {1: np.zeros((n, n)), 2: np.zeros((n, n))}
    target = {1: np.zeros((n, n)), 2: np.zeros((n, n))}
    for les in lesions:
        dz = (z - les.centre[2]) / les.radii[2]
        if abs(dz) > 2.2:
            continue
        ext = 2.3 * les.radii[:2].max()
        c0 = int(max(0, math.floor((les.centre[0] - ext + 1) * n / 2)))
        c1 = int(min(n, math.ceil((les.centre[0] + ext + 1) * n / 2)))
        r0 = int(max(0, math.floor((les.centre[1] - ext + 1) * n / 2)))
        r1 = int(min(n, math.ceil((les.centre[1] + ext + 1) * n / 2)))
        if c1 <= c0 or r1 <= r0:
            continue
        x = xx[r0:r1, c0:c1] - les.centre[0]
        y = yy[r0:r1, c0:c1] - les.centre[1]
        c, s = math.cos(les.angle), math.sin(les.angle)
        q = ((c * x + s * y) / les.radii[0]) ** 2 + ((-s * x + c * y) / les.radii[1]) ** 2 + dz * dz
        zz = z - les.centre[2]
        noise = sum(
            np.sin(les.waves[i, 0] * x + les.waves[i, 1] * y + les.waves[i, 2] * zz + les.phases[i]) for i in range(3)
        ) / 3.0
        f = np.exp(-0.5 * q) * (1.0 + 0.45 * noise)
        lo, w = _LESION_RAMP[les.kind]
        a = _smoothstep((f - lo) / w)
        view_a = alpha[les.kind][r0:r1, c0:c1]
        view_t = target[les.kind][r0:r1, c0:c1]
        upd = a > view_a
        view_t[upd] = les.hu
        np.maximum(view_a, a, out=view_a)
    return alpha[1], alpha[2], target[1], target[2]


# --------------------------------------------------------------------------- #
# Slice rendering, one helper per structure
# --------------------------------------------------------------------------- #


def _draw_table(img: FloatArray, an: _Anatomy, x: FloatArray, y: FloatArray) -> None:
    """Curved carbon-fibre table (thin bright shells around foam) below the body."""
    top = an.body_cy + an.body_b + an.table_gap + 0.1 * x**2
    d = y - top
    shell = max(0.012, 3.0 / x.shape[0])  # at least 1.5 pixels: no aliased dashes
    inside = (np.abs(x) < 0.88) & (d > 0)
    img[inside & (d < 0.048 + shell)] = -900.0
    img[inside & ((d < shell) | ((d > 0.048) & (d < 0.048 + shell)))] = 150.0


def _draw_body(img: FloatArray, an: _Anatomy, x: FloatArray, y: FloatArray, t: float) -> BoolArray:
    """Body outline with subcutaneous fat and a muscle layer; returns the body mask."""
    dy = y - an.body_cy
    grow = 1.0 + 0.03 * math.sin(2.5 * t + an.disc_phase * 6.0)
    a, b = an.body_a * grow, an.body_b * grow
    b_here = np.where(dy > 0, b * 0.97, b)  # flatter back
    rho = _superellipse(x, dy, a, b_here, an.body_p) ** (1.0 / an.body_p)
    body = rho < 1.0
    depth = (1.0 - rho) * np.hypot(x, dy) / np.maximum(rho, 1e-9)  # ~ distance below the skin
    phi = np.arctan2(dy, x)
    fat_here = an.fat * (0.6 + 0.6 * np.cos(phi) ** 2 + 0.3 * np.clip(np.sin(phi), 0.0, 1.0))
    img[body] = an.muscle_hu
    img[body & (depth < fat_here)] = an.fat_hu
    img[body & (depth < 0.006)] = an.muscle_hu - 10.0  # skin
    return body


def _draw_mediastinum(img: FloatArray, an: _Anatomy, x: FloatArray, y: FloatArray, t: float) -> BoolArray:
    """Mediastinal fat, heart, great vessels, oesophagus, airways and abdominal domes.

    Returns the mask of small structures to cut from the lungs.
    """
    a, b = _cavity_axes(an, t)
    dy = y - an.cav_cy
    cavity = _superellipse(x, dy, a, b, an.cav_p) < 1.0
    cut = np.zeros_like(cavity)
    # mediastinal fat between the lungs, anterior to the spine
    img[cavity & (np.abs(x) < _med_half_width(an, y, t) + 0.02) & (y < an.spine_y)] = an.fat_hu + 10.0
    ys, rs = an.spine_y, an.spine_r
    # diaphragmatic domes: liver (right), spleen / stomach (left)
    for side, hu in ((-1, 58.0), (1, 45.0)):
        dcx, dcy, rx, ry = (float(v) for v in _dome(an, t, side))
        if rx > 0:
            img[(_ellipse(x, y, dcx, dcy, rx + 0.012, ry + 0.012) < 1.0) & cavity] = an.fat_hu
            img[(_ellipse(x, y, dcx, dcy, rx, ry) < 1.0) & cavity] = hu
            if side > 0 and rx > 0.1:  # gastric air bubble, anterior part of the left dome
                bubble = _ellipse(x, y, dcx - 0.1 * rx, dcy - 0.55 * ry, 0.45 * rx, 0.25 * ry) < 1.0
                img[bubble & cavity] = -990.0
    # heart with pericardial fat
    hs = float(_heart_scale(an, t))
    if hs > 0:
        hx = an.heart_x * (0.6 + 0.4 * hs)
        ha, hb = an.heart_a * hs, an.heart_b * hs
        img[_ellipse(x, y, hx, an.heart_y, ha + 0.02, hb + 0.02, an.heart_angle) < 1.0] = an.fat_hu
        img[_ellipse(x, y, hx, an.heart_y, ha, hb, an.heart_angle) < 1.0] = 42.0
    # aorta: ascending + descending below the arch, the arch itself, then arch branches
    ra = an.aorta_r
    desc = (rs * 1.05 + ra, ys - 0.04)
    asc = (-0.03, an.heart_y - 0.2 * an.heart_b)
    if t < an.t_arch:
        d = np.hypot(x - desc[0], y - desc[1])
        img[d < ra + 0.012] = an.fat_hu
        img[d < ra] = 45.0
        cut |= d < ra + 0.018
    if an.heart_top - 0.12 < t < an.t_arch:
        d = np.hypot(x - asc[0], y - asc[1])
        img[d < ra * 1.15] = 45.0
        cut |= d < ra * 1.15 + 0.015
        if t < an.heart_top + 0.04:  # pulmonary trunk
            d = np.hypot(x - asc[0] - 0.13, y - asc[1] + 0.02)
            img[d < ra * 1.2] = 40.0
            cut |= d < ra * 1.2 + 0.015
    elif an.t_arch <= t < an.t_arch + 0.05:
        d = _capsule_dist(x, y, asc, desc)
        img[d < ra] = 45.0
        cut |= d < ra + 0.015
    elif t >= an.t_arch + 0.05:
        for k, off in enumerate((-0.06, 0.0, 0.05)):
            d = np.hypot(x - off, y - (ys - rs - 0.22 + 0.02 * k))
            img[d < 0.028] = 45.0
            cut |= d < 0.04
    # oesophagus
    img[np.hypot(x - 0.025, y - (ys - rs - 0.04)) < 0.028] = 35.0
    # trachea above the carina, main bronchi down to the hila below it
    ty = ys - rs - 0.12
    if t >= an.t_carina:
        d = np.hypot(x, y - ty)
        img[d < 0.062] = 40.0
        img[d < 0.052] = -1000.0
        cut |= d < 0.075
    elif t > an.t_carina - 0.12:
        f = (an.t_carina - t) / 0.12
        for side in (-1, 1):
            d = np.hypot(x - side * (0.03 + f * (an.med_w + 0.05)), y - ty - 0.05 * f)
            img[d < 0.042] = 40.0
            img[d < 0.034] = -1000.0
            cut |= d < 0.05
    return cut


def _draw_ribs(img: FloatArray, an: _Anatomy, x: FloatArray, y: FloatArray, t: float) -> None:
    """Ribs, costal cartilages, sternum and scapulae around the cavity at height ``t``."""
    a, b = _cavity_axes(an, t)
    a, b = float(a), float(b)
    dy = y - an.cav_cy
    rho = _superellipse(x, dy, a, b, an.cav_p) ** (1.0 / an.cav_p)
    rad = np.hypot(x, dy)
    r_loc = rad / np.maximum(rho, 1e-9)  # centre-to-boundary distance along the ray
    out = (rho - 1.0) * r_loc  # ~ distance outside the cavity boundary
    theta = np.arctan2(np.abs(x), dy)  # 0 posterior midline, pi anterior midline
    th = an.rib_th
    band = (out > 0) & (out < th + 0.02)
    z_mm = t * an.height_mm
    th_min, th_max, th_cart = math.radians(28.0), math.radians(148.0), math.radians(168.0)
    span = th_max - th_min
    half_w = 0.5 * 12.0 / an.rib_drop_mm * span  # ~12 mm tall ribs
    for side in (-1, 1):
        sel = band & ((x < 0) if side < 0 else (x >= 0))
        if not sel.any():
            continue
        rr, cc = np.nonzero(sel)
        o = out[rr, cc] - (0.5 * th + 0.006)
        th_pix = theta[rr, cc]
        rl = r_loc[rr, cc]
        phase = an.rib_phase_mm[0 if side < 0 else 1]
        for k in range(-3, 16):
            z_post = an.height_mm * 1.05 + phase - k * an.rib_pitch_mm
            centre = th_min + (z_post - z_mm) / an.rib_drop_mm * span
            if not th_min - half_w <= centre <= th_cart + half_w:
                continue
            hw = half_w * (0.75 + 0.5 * ((0.618 * k + phase / 30.0) % 1.0))
            ang = np.maximum(np.abs(th_pix - centre) - hw, 0.0) * rl
            d2 = o**2 + ang**2
            hit = d2 < (0.5 * th) ** 2
            if not hit.any():
                continue
            cart = centre > th_max
            cortex_hu, marrow_hu = (150.0, 120.0) if cart else (820.0, 260.0)
            marrow = d2 < (0.5 * th - 0.008) ** 2
            img[rr[hit], cc[hit]] = cortex_hu
            img[rr[marrow], cc[marrow]] = marrow_hu
    # sternum
    if 0.2 < t < 0.95:
        e = _ellipse(x, y, 0.0, an.cav_cy - b - 0.018, 0.06, 0.02)
        img[e < 1.0] = 650.0
        img[e < 0.45] = 220.0
    # scapulae, posterolateral outside the ribs in the upper chest
    if t > 0.5:
        off = min(th + 0.03, an.muscle + 0.02)
        extent = math.radians(20.0 + 40.0 * min(1.0, (t - 0.5) / 0.3))
        scap = (np.abs(out - off) < 0.009) & (theta > math.radians(40.0)) & (theta < math.radians(40.0) + extent)
        img[scap] = 650.0


def _draw_spine(img: FloatArray, an: _Anatomy, x: FloatArray, y: FloatArray, t: float) -> None:
    """Vertebra (or intervertebral disc), spinal canal and posterior elements."""
    ys, rs = an.spine_y, an.spine_r
    n = img.shape[0]
    r0, r1 = (int(np.clip((v + 1.0) * n / 2, 0, n)) for v in (ys - rs - 0.05, ys + rs + 0.3))
    c0, c1 = (int(np.clip((v + 1.0) * n / 2, 0, n)) for v in (-rs - 0.15, rs + 0.15))
    img, x, y = img[r0:r1, c0:c1], x[r0:r1, c0:c1], y[r0:r1, c0:c1]  # views: draw in a window
    level = (t * an.height_mm / 24.0 + an.disc_phase) % 1.0
    e = _ellipse(x, y, 0.0, ys, rs * 1.1, rs)
    if level < 0.2:  # intervertebral disc
        img[e < 1.0] = 90.0
    else:
        img[e < 1.0] = 750.0
        img[_ellipse(x, y, 0.0, ys, rs * 1.1 - 0.012, rs - 0.012) < 1.0] = 230.0
    yc = ys + rs + 0.045  # spinal canal centre
    tip = yc + 0.07 + 0.05 * (1.0 - level)
    elements = _capsule_dist(x, y, (0.0, yc + 0.055), (0.0, tip)) < 0.014  # spinous process
    for side in (-1, 1):
        px = side * 0.6 * rs
        elements |= _capsule_dist(x, y, (px, ys + 0.6 * rs), (px, yc)) < 0.017  # pedicle
        elements |= _capsule_dist(x, y, (px, yc), (0.0, yc + 0.055)) < 0.014  # lamina
        elements |= _capsule_dist(x, y, (px, yc), (side * (rs + 0.09), yc + 0.015)) < 0.016  # transverse
    img[elements] = 650.0
    img[np.hypot(x / 1.1, y - yc) < 0.038] = 15.0  # spinal canal (CSF / cord)


def _draw_lungs(
    img: FloatArray,
    lung: BoolArray,
    an: _Anatomy,
    tree: _Tree,
    lesions: list[_Lesion],
    t: float,
    rng: np.random.Generator,
) -> NDArray[np.uint8]:
    """Parenchyma, ground-glass, vessels, airways and consolidation; returns the infection mask."""
    n = img.shape[0]
    x, y = _grid(n)
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (n, n)), sigma=max(1.0, n / 64))
    texture *= 12.0 / max(texture.std(), 1e-9)
    post = np.clip((y - an.cav_cy + an.cav_b) / (2 * an.cav_b), 0.0, 1.0)
    paren = an.lung_hu + an.lung_gradient_hu * (post - 0.5) + texture
    z = t * an.lung_height_u
    a_ggo, a_con, hu_ggo, hu_con = _lesion_alpha(lesions, z, n)
    a_ggo = np.where(lung, a_ggo, 0.0)
    a_con = np.where(lung, a_con, 0.0)
    # ground glass: hazy, heterogeneous, under the vessels
    hetero = 0.85 + 0.15 * np.clip(texture / 24.0 + 0.5, 0.0, 1.0)
    tissue = paren + a_ggo * hetero * (hu_ggo - paren)
    vessels, wall, lumen = _vessel_maps(an, tree, t, n)
    tissue = tissue + wall * (-50.0 - tissue)
    tissue = tissue + lumen * (-1000.0 - tissue)
    tissue = tissue + vessels * (an.vessel_hu - tissue)
    # consolidation: dense, hides the vessels
    tissue = tissue + a_con * (hu_con - tissue)
    img[lung] = tissue[lung]
    # hilar vessels continue through the mediastinal fat next to the lungs
    hilum = (~lung) & (img < -60.0) & (img > -140.0) & (vessels > 0.5) & (np.abs(x) < an.cav_a * 0.6)
    img[hilum] = an.vessel_hu
    infection = np.zeros((n, n), np.uint8)
    infection[a_ggo > 0] = 1
    infection[a_con > 0] = 2
    return infection


def _render_slice(
    an: _Anatomy, tree: _Tree, lesions: list[_Lesion], t: float, region: BoolArray, rng: np.random.Generator
) -> tuple[NDArray[np.int16], NDArray[np.uint8], NDArray[np.uint8]]:
    """Render one axial slice at height ``t``: ``(hu int16, lung uint8, infection uint8)``.

    ``region`` is ``_lungs`` evaluated on the slice grid.
    """
    n = region.shape[0]
    x, y = _grid(n)
    img = np.full((n, n), -1000.0)
    _draw_table(img, an, x, y)
    body = _draw_body(img, an, x, y, t)
    cut = _draw_mediastinum(img, an, x, y, t)
    _draw_ribs(img, an, x, y, t)
    _draw_spine(img, an, x, y, t)
    lung = region & ~cut & body
    infection = _draw_lungs(img, lung, an, tree, lesions, t, rng)
    # scanner: reconstruction-kernel blur, then correlated quantum noise
    img = ndimage.gaussian_filter(img, an.blur_px, mode="nearest")
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (n, n)), 0.7)
    img += noise * (an.noise_hu / max(noise.std(), 1e-9))
    hu = np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16)
    return hu, lung.astype(np.uint8), infection


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _patient_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), stream])


def _make_patient(index: int, label: str, slices: int, size: int, seed: int) -> tuple[PhantomVolume, _Anatomy]:
    an = _sample_anatomy(_patient_rng(seed, index, _STREAM_ANATOMY), slices, size)
    tree = _grow_vessels(an, _patient_rng(seed, index, _STREAM_VESSELS))
    x, y = _grid(size)
    ts = [an.t_of_slice(s) for s in range(slices)]
    lesions: list[_Lesion] = []
    lungs = [_lungs(an, x, y, t) for t in ts]
    if label == "covid":
        lesions = _sample_lesions(an, lungs, ts, size, _patient_rng(seed, index, _STREAM_LESIONS))
    noise_rng = _patient_rng(seed, index, _STREAM_NOISE)
    hu = np.empty((slices, size, size), np.int16)
    lung = np.empty((slices, size, size), np.uint8)
    inf = np.empty((slices, size, size), np.uint8)
    for s, t in enumerate(ts):
        hu[s], lung[s], inf[s] = _render_slice(an, tree, lesions, t, lungs[s], noise_rng)
    volume = PhantomVolume(
        patient_id=f"PH{index:04d}",
        label=label,
        hu=hu,
        lung_mask=lung,
        infection_mask=inf,
        spacing_mm=(an.pixel_mm, an.pixel_mm, an.slice_mm),
    )
    return volume, an


def generate_patient(index: int, label: str, *, slices: int = 8, size: int = 128, seed: int = 0) -> PhantomVolume:
    """Generate one synthetic chest CT patient.

    Parameters
    ----------
    index:
        Patient number (>= 0); the id is ``"PH%04d" % index``.
    label:
        ``"covid"`` (with lesions) or ``"noncovid"`` (none).
    slices:
        Number of axial slices ``S`` (>= 1), centred on the chest and evenly
        spaced by ``min(range / S, 25 mm)`` where ``range`` (~140-190 mm) runs
        from just above the lung bases to near the apices.
    size:
        In-plane matrix ``H = W`` (>= 32); the field of view is 330-380 mm, so
        pixels are ``FOV / size`` mm.
    seed:
        Dataset seed (>= 0). Anatomy and noise depend only on ``(seed, index)``,
        lesions also on ``label``; equal arguments give bit-identical arrays.
    """
    _check_int("index", index, 0)
    _check_int("slices", slices, 1)
    _check_int("size", size, 32)
    _check_int("seed", seed, 0)
    if label not in CLASSES:
        raise ValueError(f"label must be one of {CLASSES}, got {label!r}")
    return _make_patient(int(index), label, int(slices), int(size), int(seed))[0]


def _class_order(n_patients: int, covid_fraction: float, seed: int) -> list[str]:
    """Deterministically shuffled class labels; both classes always present."""
    n_covid = min(max(int(round(n_patients * covid_fraction)), 1), n_patients - 1)
    labels = np.array(["covid"] * n_covid + ["noncovid"] * (n_patients - n_covid))
    order = np.random.default_rng([int(seed), _STREAM_ORDER]).permutation(n_patients)
    return [str(v) for v in labels[order]]


def _ds(value: float) -> str:
    """Decimal String of a value with at most 4 decimals, written exactly (no float noise)."""
    return f"{round(value, 4) + 0.0:.4f}".rstrip("0").rstrip(".")


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[_UID_NAMESPACE, *map(str, parts)])


def _write_dicom_series(folder: Path, vol: PhantomVolume, an: _Anatomy, index: int, seed: int) -> None:
    """Write ``vol`` as one CT Image Storage file per slice into ``folder``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    folder.mkdir(parents=True, exist_ok=True)
    s_count, rows, cols = vol.hu.shape
    key = (seed, index, vol.label, s_count, rows)
    study_uid = _uid("study", *key)
    series_uid = _uid("series", *key)
    frame_uid = _uid("frame", *key)
    row_mm, col_mm, slice_mm = vol.spacing_mm
    patient_name = f"Phantom^Patient{index:04d}"
    patient_id = f"LSPH-{seed}-{index:04d}"
    for s in range(s_count):
        sop_uid = _uid("image", *key, s)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        name = hashlib.sha1(sop_uid.encode()).hexdigest()[:20] + ".dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20200401"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = "lungsynth"
        ds.ManufacturerModelName = "procedural phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Synthetic chest CT"
        ds.SeriesDescription = "lungsynth phantom"
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = f"{2020 - an.age}0101"
        ds.PatientSex = an.sex
        ds.PatientAge = f"{an.age:03d}Y"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = _ds(slice_mm)
        ds.SpacingBetweenSlices = _ds(slice_mm)
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = s + 1
        z = s * slice_mm  # mm, increasing towards the head
        ds.ImagePositionPatient = [_ds(-(cols - 1) / 2 * col_mm), _ds(-(rows - 1) / 2 * row_mm), _ds(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(z)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.PixelSpacing = [_ds(row_mm), _ds(col_mm)]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        ds.RescaleIntercept = str(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        stored = (vol.hu[s].astype(np.int32) - RESCALE_INTERCEPT).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / name, enforce_file_format=True)


def _write_nifti(path: Path, stack: np.ndarray, spacing_mm: tuple[float, float, float]) -> None:
    import nibabel as nib

    from lungsynth.data.volumes import stack_to_nifti

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(stack_to_nifti(stack, spacing_mm), str(path))


def write_phantom_ct(
    out_dir: str | Path,
    *,
    n_patients: int = 24,
    covid_fraction: float = 0.5,
    slices_per_patient: int = 8,
    size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> "pd.DataFrame":
    """Generate the phantom dataset and write it atomically into ``out_dir``.

    Layout of ``out_dir``::

        dicom/<label>/<patient_id>/<sha1-of-SOP-UID>.dcm   one file per slice
        nifti/images/<patient_id>.nii.gz            int16 HU
        nifti/lung_masks/<patient_id>.nii.gz        uint8 0/1
        nifti/infection_masks/<patient_id>.nii.gz   uint8 0/1/2
        labels.csv                                  columns patient,class

    ``round(n_patients * covid_fraction)`` patients (clamped to ``[1, n-1]``)
    are COVID, ids ``PH0000``... in a seeded shuffled class order. Everything
    is built in a hidden sibling temp folder and renamed onto ``out_dir`` only
    when complete (an old ``out_dir`` is removed afterwards); on error nothing
    is left behind. Returns the ``labels.csv`` table.
    """
    import pandas as pd

    from lungsynth.runlog import progress_bar

    _check_int("n_patients", n_patients, 2)
    if isinstance(covid_fraction, bool) or not isinstance(covid_fraction, (int, float, np.floating)) or not (
        0.0 < float(covid_fraction) < 1.0
    ):
        raise ValueError(f"covid_fraction must be a number strictly between 0 and 1, got {covid_fraction!r}")
    _check_int("slices_per_patient", slices_per_patient, 1)
    _check_int("size", size, 32)
    _check_int("seed", seed, 0)

    labels = _class_order(int(n_patients), float(covid_fraction), int(seed))
    with atomic_folder(out_dir) as tmp:
        rows = []
        for index in progress_bar(range(len(labels)), desc="phantom CT", unit="patient", disable=not progress):
            label = labels[index]
            vol, an = _make_patient(index, label, int(slices_per_patient), int(size), int(seed))
            _write_dicom_series(tmp / "dicom" / label / vol.patient_id, vol, an, index, int(seed))
            _write_nifti(tmp / "nifti" / "images" / f"{vol.patient_id}.nii.gz", vol.hu, vol.spacing_mm)
            _write_nifti(tmp / "nifti" / "lung_masks" / f"{vol.patient_id}.nii.gz", vol.lung_mask, vol.spacing_mm)
            _write_nifti(
                tmp / "nifti" / "infection_masks" / f"{vol.patient_id}.nii.gz", vol.infection_mask, vol.spacing_mm
            )
            rows.append({"patient": vol.patient_id, "class": label})
        frame = pd.DataFrame(rows, columns=["patient", "class"])
        frame.to_csv(tmp / "labels.csv", index=False)
    return frame
