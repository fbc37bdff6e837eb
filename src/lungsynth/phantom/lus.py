"""Procedural lung-ultrasound (LUS) phantom: short convex-probe clips scored 0-3.

Every clip shows one chest area of one synthetic patient as seen by a convex
probe: a fan-shaped sector (apex above the top edge, about 64 degrees wide,
curved top and bottom arcs) on a black background. The sector is rendered in
polar (depth x angle) coordinates and scan-converted to the Cartesian frame,
so speckle is Rayleigh-like, laterally correlated and widens with depth, and
horizontal structures are arcs. From the probe down:

* skin, subcutaneous fat with septa, intercostal muscle with striations;
* the pleural line a few mm below the top of the sector (bright, granular);
  it and everything below it slide laterally by a pixel or two from frame to
  frame (lung sliding);
* findings by lung severity score (the class):

  - 0: A-lines, fading copies of the pleural line at multiples of its depth;
  - 1: 1-3 discrete B-lines (bright comet tails from the pleura to the bottom
    of the sector, moving with sliding), faint A-lines between them;
  - 2: many B-lines, some wide and confluent, no A-lines;
  - 3: a subpleural consolidation (tissue-like, moderately echogenic region
    with bright air-bronchogram dots and an irregular deep border) under a
    fragmented, irregular pleura; half of the clips add white lung (diffuse
    bright B-line confluence) next to it.

Depth attenuation, log compression to 8 bit, occasional rib shadows at the
sector's lateral edges. Every clip depends only on ``(seed, patient, area)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from lungsynth.artifacts import atomic_folder

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["SCORES", "FanGeometry", "fan_geometry", "fan_mask", "generate_clip", "score_table", "write_phantom_lus"]

logger = logging.getLogger(__name__)

SCORES: tuple[int, ...] = (0, 1, 2, 3)
HALF_ANGLE_DEG = 32.0
"""Half the angular width of the fan (degrees)."""
DYNAMIC_RANGE_DB = 50.0
"""Log-compression range: amplitudes from -50 dB to 0 dB map to 0..255."""
FPS = 15
_STREAM_SCORES = 0x5C0E  # default_rng([seed, _STREAM_SCORES]) orders the score pattern


@dataclass(frozen=True)
class FanGeometry:
    """Sector geometry in pixels of an ``height x width`` frame (row 0 at the top).

    The apex sits at ``(apex_row, centre_col)`` with ``apex_row < 0`` (above the
    frame); the sector holds the points at radius ``r_min..r_max`` from the apex
    and angle ``|phi| <= half_angle`` (radians) from the vertical.
    """

    height: int
    width: int
    apex_row: float
    centre_col: float
    r_min: float
    r_max: float
    half_angle: float

    @property
    def depth(self) -> float:
        """Sector depth ``r_max - r_min`` (pixels)."""
        return self.r_max - self.r_min

    def bbox(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` of the sector, bottom/right exclusive."""
        top = self.apex_row + self.r_min * math.cos(self.half_angle)  # the top arc's corners
        bottom = self.apex_row + self.r_max
        half = self.r_max * math.sin(self.half_angle)
        return (int(math.floor(top)), int(math.ceil(bottom)) + 1,
                int(math.floor(self.centre_col - half)), int(math.ceil(self.centre_col + half)) + 1)


def fan_geometry(height: int, width: int) -> FanGeometry:
    """Geometry of the phantom's fan for a frame size (same for every clip).

    The bottom arc's corners sit 3 px inside the left/right edges (or the bottom
    arc 4 px above the bottom edge, whichever comes first); the top arc's corners
    touch row 3; the probe footprint (top arc) is about a fifth of the width.
    The bottom arc ends above the bottom edge when the frame is wide.
    """
    theta = math.radians(HALF_ANGLE_DEG)
    centre = (width - 1) / 2.0
    r_max_fit = (width / 2.0 - 3.0) / math.sin(theta)
    r_min = max(0.2 * width / (2 * math.sin(theta)), 8.0)
    apex_row = 3.0 - r_min * math.cos(theta)  # top arc's corners on row 3, its centre a little lower
    r_max = min(r_max_fit, height - 4.0 - apex_row)
    return FanGeometry(height, width, apex_row, centre, r_min, r_max, theta)


def _polar_coords(geom: FanGeometry, n_depth: int, n_angle: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel polar sample coordinates ``(row, col)`` and a soft fan weight in ``[0, 1]``."""
    rows, cols = np.mgrid[0:geom.height, 0:geom.width].astype(np.float64)
    dy, dx = rows - geom.apex_row, cols - geom.centre_col
    r = np.hypot(dx, dy)
    phi = np.arctan2(dx, dy)
    depth_px = r - geom.r_min
    # soft edges (about 1 px wide) on the arcs and the sides
    lateral_px = (geom.half_angle - np.abs(phi)) * r
    weight = np.clip(np.minimum.reduce([depth_px + 0.5, geom.depth - depth_px + 0.5, lateral_px + 0.5]), 0.0, 1.0)
    prow = depth_px / geom.depth * (n_depth - 1)
    pcol = (phi + geom.half_angle) / (2 * geom.half_angle) * (n_angle - 1)
    return prow, pcol, weight


def fan_mask(height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the pixels inside the phantom's fan (any coverage)."""
    geom = fan_geometry(height, width)
    _, _, weight = _polar_coords(geom, 2, 2)
    return weight > 0


def score_table(n_patients: int, areas_per_patient: int, seed: int) -> np.ndarray:
    """Severity score ``int (n_patients, areas_per_patient)`` of every clip.

    ``score[p, a] = (perm[p] + a) % 4`` with a seeded permutation ``perm`` of
    the patients: scores cycle over a patient's areas, so patients carry mixed
    scores (as in real exams) and all four scores are about equally common;
    each score has at least 2 patients when ``n_patients >= 4`` and
    ``areas_per_patient >= 2`` (or ``n_patients >= 8``).
    """
    perm = np.random.default_rng([seed, _STREAM_SCORES]).permutation(n_patients)
    return (perm[:, None] + np.arange(areas_per_patient)[None, :]) % len(SCORES)


# --------------------------------------------------------------------------- rendering


def _speckle_field(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Complex circular Gaussian field, low-pass filtered (``sigma`` in samples), unit mean power."""
    noise = rng.standard_normal((2, *shape), dtype=np.float32)
    filt = ndimage.gaussian_filter(noise, (0, *sigma), mode="wrap")
    field = filt[0] + 1j * filt[1]
    return field / np.sqrt(np.mean(filt * filt) * 2)


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """1-D smooth noise of length ``n``, zero mean, unit std."""
    v = ndimage.gaussian_filter1d(rng.standard_normal(n + int(6 * sigma)), sigma, mode="wrap")
    v = v[: n]
    return (v - v.mean()) / (v.std() + 1e-9)


def _db(x: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, np.asarray(x) / 20.0)


@dataclass
class _Scene:
    """Static amplitude maps of one clip in polar samples ``(n_depth, n_angle [+ 2 pad])``."""

    wall: np.ndarray  # chest wall amplitude (static), n_angle wide
    wall_weight: np.ndarray  # 1 above the pleura, 0 below (soft), n_angle wide
    lung: np.ndarray  # lung amplitude incl. pleura/artefacts, n_angle + 2 pad wide (slides)
    lung_smooth: np.ndarray  # fraction of the lung amplitude with reduced speckle (B-lines), same shape
    shadow: np.ndarray  # multiplicative rib-shadow map (static), n_angle wide
    pad: int


def _render_scene(rng: np.random.Generator, score: int, n_depth: int, n_angle: int, pad: int) -> _Scene:
    nd, na = n_depth, n_angle
    wide = na + 2 * pad
    d = np.arange(nd, dtype=np.float64)[:, None]
    a_wide = np.arange(wide, dtype=np.float64)[None, :]
    a = a_wide[:, pad:pad + na]

    d_pl = nd * rng.uniform(0.18, 0.24)  # pleura depth (samples from the probe surface)
    # ---- chest wall (static), in dB
    wave = lambda amp, sig: amp * _smooth_noise(rng, na, sig)[None, :]  # noqa: E731
    fat_end = d_pl * rng.uniform(0.3, 0.45) + wave(1.5, 20)
    wall_db = np.full((nd, na), -34.0)
    wall_db = np.where(d < 2.5, -14.0, wall_db)  # skin / coupling
    wall_db = np.where((d >= 2.5) & (d < fat_end), -40.0, wall_db)  # fat
    muscle = (d >= fat_end) & (d < d_pl - 2)
    wall_db = np.where(muscle, -31.0, wall_db)
    for _ in range(rng.integers(1, 4)):  # septa in the fat
        depth = rng.uniform(4, max(5.0, float(np.mean(fat_end)) - 1)) + wave(1.0, 15)
        span = (a > rng.uniform(0, na * 0.6)) & (a < rng.uniform(na * 0.4, na))
        wall_db = np.maximum(wall_db, np.where(span, -22.0 - 6 * ((d - depth) / 1.0) ** 2, -99))
    for _ in range(rng.integers(3, 7)):  # muscle striations / fascia
        depth = rng.uniform(float(np.mean(fat_end)) + 1, d_pl - 3) + wave(0.8, 25)
        span = (a > rng.uniform(-na * 0.2, na * 0.7)) & (a < rng.uniform(na * 0.3, na * 1.2))
        wall_db = np.maximum(wall_db, np.where(span, -21.0 - 5 * ((d - depth) / 0.9) ** 2, -99))
    fascia = d_pl - 4 + wave(0.5, 30)
    wall_db = np.maximum(wall_db, -18.0 - 5 * ((d - fascia) / 1.0) ** 2)
    wall_weight = 1.0 / (1.0 + np.exp((d - (d_pl - 1.5)) / 0.7))

    # ---- lung side (slides), in linear amplitude
    aw = a_wide
    pl_depth = d_pl + 0.6 * _smooth_noise(rng, wide, 12)[None, :]
    pl_gain = 0.75 + 0.25 * _smooth_noise(rng, wide, 2)[None, :]
    if score == 3:  # irregular, fragmented pleura
        pl_depth = pl_depth + 1.8 * _smooth_noise(rng, wide, 4)[None, :]
        pl_gain = pl_gain * np.clip(0.6 + 0.5 * _smooth_noise(rng, wide, 3)[None, :], 0.1, 1.2)
    pl_gain = np.clip(pl_gain, 0.1, 1.2)
    below = 1.0 / (1.0 + np.exp(-(d - pl_depth - 1.0) / 0.8))  # 0 above, 1 below the pleura
    lung = _db(-38.0) * below * np.exp(-d / (nd * 1.5))  # reverberation haze
    lung = lung + pl_gain * np.exp(-0.5 * ((d - pl_depth) / 1.1) ** 2)
    smooth = np.zeros_like(lung)

    a_line_db = {0: -11.0, 1: -18.0}.get(score)
    if a_line_db is not None:
        for k in range(2, 8):
            depth = k * d_pl
            if depth > nd:
                break
            amp = _db(a_line_db - 10.0 * (k - 2)) * (0.8 + 0.2 * pl_gain)
            lung = lung + amp * np.exp(-0.5 * ((d - depth) / (0.9 + 0.15 * k)) ** 2)

    def b_line(centre: float, width: float, level_db: float) -> np.ndarray:
        prof = np.exp(-0.5 * ((aw - centre) / width) ** 2)
        along = 0.85 + 0.15 * _smooth_noise(rng, nd, 6)[:, None]
        start = 1.0 / (1.0 + np.exp(-(d - pl_depth - 0.5) / 0.6))
        fade = np.exp(-(d - d_pl) / (nd * rng.uniform(1.5, 4.0)))
        return _db(level_db) * prof * along * start * fade

    b_total = np.zeros_like(lung)
    lo, hi = pad + 0.12 * na, pad + 0.88 * na
    if score == 1:
        for c in rng.uniform(lo, hi, rng.integers(1, 4)):
            b_total = np.maximum(b_total, b_line(c, rng.uniform(1.2, 2.2), rng.uniform(-7, -3)))
    elif score == 2:
        for c in rng.uniform(lo, hi, rng.integers(4, 8)):
            b_total = np.maximum(b_total, b_line(c, rng.uniform(1.3, 3.0), rng.uniform(-7, -3)))
        for c in rng.uniform(lo + 0.1 * na, hi - 0.1 * na, rng.integers(1, 3)):
            b_total = np.maximum(b_total, b_line(c, rng.uniform(7, 14), rng.uniform(-9, -5)))
    elif score == 3:
        # consolidation: subpleural, tissue-like, irregular deep border
        c0 = rng.uniform(pad + 0.3 * na, pad + 0.7 * na)
        half = rng.uniform(0.2, 0.3) * na
        lat = np.clip(1 - ((aw - c0) / half) ** 4, 0, None)
        deep = pl_depth + np.sqrt(lat) * nd * rng.uniform(0.25, 0.42) * (1 + 0.2 * _smooth_noise(rng, wide, 4)[None, :])
        inside = (d > pl_depth + 1) & (d < deep) & (lat > 0)
        soft = ndimage.gaussian_filter(inside.astype(np.float64), 1.2)
        texture = ndimage.gaussian_filter(rng.standard_normal((nd, wide)), (2.5, 4.0), mode="wrap")
        texture = texture / (texture.std() + 1e-9)
        cons = soft * _db(-25.0 + 3.0 * texture)
        lung = (1 - soft) * lung + cons
        # bright irregular deep border (shred sign) with comet tails below it
        lung = lung + _db(-17.0) * np.exp(-0.5 * ((d - deep) / 1.5) ** 2) * (lat > 0.05) * np.clip(0.7 + 0.5 * texture, 0, 1.5)
        for _ in range(rng.integers(12, 26)):  # air bronchograms: dots / short streaks
            ca = rng.uniform(c0 - 0.8 * half, c0 + 0.8 * half)
            frac = np.clip(1 - ((ca - c0) / half) ** 2, 0, None)
            cd = d_pl + 3 + rng.uniform(0.1, 0.85) * (np.sqrt(frac) * nd * 0.3)
            blob = np.exp(-0.5 * (((d - cd) / rng.uniform(0.8, 1.6)) ** 2 + ((aw - ca) / rng.uniform(0.8, 3.0)) ** 2))
            lung = lung + _db(rng.uniform(-10, -4)) * blob * soft
        for c in rng.uniform(c0 - 0.6 * half, c0 + 0.6 * half, rng.integers(1, 3)):
            tail = b_line(c, rng.uniform(1.5, 3.0), -8.0) * (d > deep)
            b_total = np.maximum(b_total, tail)
        if rng.random() < 0.5:  # white lung beside the consolidation
            white = (1 - np.clip(lat * 4, 0, 1)) * below * (0.8 + 0.2 * _smooth_noise(rng, wide, 8)[None, :])
            b_total = np.maximum(b_total, _db(-12.0) * white)
        else:
            for c in rng.uniform(lo, hi, rng.integers(2, 4)):
                b_total = np.maximum(b_total, b_line(c, rng.uniform(1.5, 4.0), -6.0) * (lat < 0.05))
    if score >= 1:
        # B-lines erase the A-lines they cross
        lung = lung * (1 - np.clip(b_total / _db(-9.0), 0, 0.9) * (d > pl_depth + 2)) + b_total
        smooth = b_total

    # ---- rib shadows at the lateral edges (static)
    shadow = np.ones((nd, na))
    for side in (0, 1):
        if rng.random() < 0.35:
            w = rng.uniform(0.08, 0.14) * na
            edge = w if side == 0 else na - w
            inside = (a < edge) if side == 0 else (a > edge)
            soft = 1.0 / (1.0 + np.exp(((a - edge) if side == 0 else (edge - a)) / 1.5))
            rib_top = d_pl - rng.uniform(1, 4)
            shadow = shadow * (1 - 0.93 * soft * (d > rib_top + 2))
            wall_db = np.maximum(wall_db, np.where(inside, -6.0 - 4 * ((d - rib_top) / 1.2) ** 2, -99))
    wall = _db(wall_db)
    return _Scene(wall, wall_weight, lung, smooth, shadow, pad)


def generate_clip(
    score: int, *, frames: int = 12, height: int = 192, width: int = 224, rng: np.random.Generator
) -> np.ndarray:
    """Render one clip of severity ``score``: uint8 ``(frames, height, width)``, 0 outside the fan."""
    geom = fan_geometry(height, width)
    nd = int(math.ceil(geom.depth)) + 1
    na = int(math.ceil(2 * geom.half_angle * geom.r_max * 0.8))
    pad = 8
    scene = _render_scene(rng, int(score), nd, na, pad)
    prow, pcol, weight = _polar_coords(geom, nd, na)
    inside = weight > 0
    coords = np.stack([np.clip(prow[inside], 0, nd - 1), np.clip(pcol[inside], 0, na - 1)])

    d = np.arange(nd, dtype=np.float64)[:, None]
    atten = _db(-9.0 * d / nd) * _db(-2.5 * (np.abs(np.linspace(-1, 1, na)) ** 4))[None, :]
    wall_speckle = (_speckle_field(rng, (nd, na), (0.7, 1.6)), _speckle_field(rng, (nd, na), (0.7, 1.6)))
    lung_speckle = _speckle_field(rng, (nd, na + 2 * pad), (0.7, 1.6))
    lung_speckle2 = _speckle_field(rng, (nd, na + 2 * pad), (0.7, 1.6))
    period = rng.uniform(8, 16)
    amp = rng.uniform(0.8, 2.2)
    phase = rng.uniform(0, 2 * np.pi)
    gain_db = rng.uniform(-2, 2)
    out = np.zeros((frames, height, width), dtype=np.uint8)
    for t in range(frames):
        shift = amp * math.sin(2 * math.pi * t / period + phase)
        i0 = int(math.floor(shift))
        frac = shift - i0

        def slide(arr: np.ndarray) -> np.ndarray:
            s0 = arr[:, pad + i0: pad + i0 + na]
            s1 = arr[:, pad + i0 + 1: pad + i0 + 1 + na]
            return (1 - frac) * s0 + frac * s1

        fresh = _speckle_field(rng, (nd, na + 2 * pad), (0.7, 1.6))
        fresh_w, fresh_l = fresh[:, :na], fresh[:, 2 * pad:]
        # two-look compounding (mean power of two fields) softens the speckle like scanner post-processing
        w_sp = np.sqrt(0.5 * np.abs(0.97 * wall_speckle[0] + 0.24 * fresh_w) ** 2 + 0.5 * np.abs(wall_speckle[1]) ** 2)
        lsl = slide(lung_speckle)
        l_sp = np.sqrt(0.5 * np.abs(0.8 * lsl + 0.6 * fresh_l) ** 2 + 0.5 * np.abs(slide(lung_speckle2)) ** 2)
        lung_amp = slide(scene.lung)
        smooth_amp = slide(scene.lung_smooth)
        lung_img = (lung_amp - smooth_amp) * l_sp + smooth_amp * (0.55 + 0.45 * l_sp)
        amp_img = scene.wall_weight * scene.wall * w_sp + (1 - scene.wall_weight) * lung_img
        amp_img = amp_img * scene.shadow * atten * _db(gain_db) + _db(-44.0) * w_sp
        db = 20 * np.log10(amp_img + 1e-12)
        polar = np.clip((db + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB, 0, 1) * 255.0
        vals = ndimage.map_coordinates(polar, coords, order=1, mode="nearest")
        frame = np.zeros((height, width))
        frame[inside] = vals * weight[inside]
        out[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- writing


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _encode_pyav(path: Path, frames: np.ndarray, codec: str, options: dict[str, str]) -> None:
    """Encode gray ``(N, H, W)`` uint8 frames replicated to RGB, yuv420p, at :data:`FPS` (PyAV)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for frame in frames:
            rgb = np.ascontiguousarray(np.repeat(frame[..., None], 3, axis=-1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_video(path: Path, frames: np.ndarray) -> Path:
    """Write gray ``(N, H, W)`` uint8 frames as mp4 (H.264, else MPEG-4 part 2, via PyAV); GIF if neither works.

    Returns the path actually written (suffix ``.gif`` on fallback).
    """
    import imageio.v3 as iio

    errors = []
    for codec, options in (("libx264", {"preset": "veryfast", "crf": "18", "threads": "1"}), ("mpeg4", {"qscale": "3"})):
        try:
            _encode_pyav(path, frames, codec, options)
            return path
        except Exception as exc:  # ImportError (no av), codec not built in, ...
            errors.append(f"{codec}: {type(exc).__name__}: {exc}")
            path.unlink(missing_ok=True)
    gif = path.with_suffix(".gif")
    logger.warning("cannot write mp4 (%s); writing %s as GIF instead", "; ".join(errors), gif.name)
    iio.imwrite(gif, frames, plugin="pillow", duration=1000 / FPS, loop=0)
    return gif


def write_phantom_lus(
    out_dir: str | Path,
    *,
    n_patients: int = 8,
    areas_per_patient: int = 4,
    frames: int = 12,
    height: int = 192,
    width: int = 224,
    seed: int = 0,
    progress: bool = False,
) -> "pd.DataFrame":
    """Generate the LUS phantom and write it atomically into ``out_dir``.

    Layout of ``out_dir`` (``NN`` 1-based, 2 digits; one exam per patient)::

        mat/patientNN_exam1_areaNN.mat   uint8 clips; even clip numbers: H x W x 3 x N
                                         under variable ``video``, odd: H x W x N under ``frames``
        mat/scores.csv                   columns file,score (file = .mat name)
        videos/patientNN_exam1_areaNN.mp4  the same clips, gray as RGB, H.264 at 15 fps
        labels.csv                       POCUS layout: path,label,lung_severity_score,probe,
                                         n_frames,height,width,license

    Scores follow :func:`score_table`. ``height`` and ``width`` must be even
    (video encoders need it). Built in a hidden sibling temp folder renamed
    onto ``out_dir`` when complete (an old ``out_dir`` is replaced); on error
    nothing is left. Returns the scores table (columns file, score).
    """
    import pandas as pd
    import scipy.io

    from lungsynth.runlog import progress_bar

    _check_int("n_patients", n_patients, 1)
    _check_int("areas_per_patient", areas_per_patient, 1)
    _check_int("frames", frames, 1)
    _check_int("height", height, 64)
    _check_int("width", width, 64)
    _check_int("seed", seed, 0)
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even (video encoding), got {height}x{width}")
    scores = score_table(int(n_patients), int(areas_per_patient), int(seed))
    with atomic_folder(out_dir) as tmp:
        (tmp / "mat").mkdir()
        (tmp / "videos").mkdir()
        score_rows, label_rows = [], []
        clips = [(p, a) for p in range(n_patients) for a in range(areas_per_patient)]
        for index in progress_bar(range(len(clips)), desc="phantom LUS", unit="clip", disable=not progress):
            p, a = clips[index]
            score = int(scores[p, a])
            rng = np.random.default_rng([int(seed), p, a])
            clip = generate_clip(score, frames=int(frames), height=int(height), width=int(width), rng=rng)
            stem = f"patient{p + 1:02d}_exam1_area{a + 1:02d}"
            if index % 2 == 0:
                mdict = {"video": np.ascontiguousarray(np.repeat(clip.transpose(1, 2, 0)[:, :, None, :], 3, axis=2))}
            else:
                mdict = {"frames": np.ascontiguousarray(clip.transpose(1, 2, 0))}
            scipy.io.savemat(tmp / "mat" / f"{stem}.mat", mdict, do_compression=True)
            written = _write_video(tmp / "videos" / f"{stem}.mp4", clip)
            score_rows.append({"file": f"{stem}.mat", "score": score})
            label_rows.append({
                "path": written.relative_to(tmp).as_posix(), "label": "COVID-19" if score > 0 else "healthy",
                "lung_severity_score": score, "probe": "convex", "n_frames": int(frames), "height": int(height),
                "width": int(width), "license": "synthetic",
            })
        table = pd.DataFrame(score_rows, columns=["file", "score"])
        table.to_csv(tmp / "mat" / "scores.csv", index=False)
        pd.DataFrame(label_rows).to_csv(tmp / "labels.csv", index=False)
    return table
