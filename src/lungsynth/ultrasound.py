"""Lung-ultrasound readers (MATLAB ``.mat`` clips, video files) and sector cropping.

Readers return ``(records, skipped)`` like :mod:`lungsynth.readers`: one
record per sampled frame with the manifest columns
(:data:`lungsynth.readers.RECORD_COLUMNS`), ``class`` = the lung severity
score as text (``"0"``..``"3"``), ``unit`` = ``8bit``, ``slice`` = the frame
index in the clip, no masks. ``patient`` is the patient (``split_by="patient"``)
or the clip (``split_by="video"``), so splits never cut through a clip.

Accepted ``.mat`` arrays (numeric, H and W >= 8):

* ndim 3: ``H x W x N`` gray frames;
* ndim 4: ``H x W x C x N`` or ``H x W x N x C`` with C in {1, 3} (C on axis
  2 wins when both axes could be channels);

values uint8 / integer 0..255 (uint16 above 255: scaled by 1/257), or float
in [0, 1] (scaled by 255) or [0, 255].
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.readers import (
    Record,
    Skipped,
    _BadFiles,
    _compile_patient_regex,
    _field,
    _list_files,
    _record,
    _rel,
    check_unique_ids,
    sanitize_id,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MAT_SUFFIXES", "VIDEO_SUFFIXES", "DEFAULT_PATIENT_REGEX", "scan_lus_mat", "scan_lus_videos", "load_frame",
    "clear_cache", "sector_bbox", "crop_to_sector", "center_pad", "sample_frames",
]

MAT_SUFFIXES: frozenset[str] = frozenset({".mat"})
VIDEO_SUFFIXES: frozenset[str] = frozenset({".gif", ".mp4", ".mov", ".mpeg", ".mpg", ".avi", ".m4v"})
DEFAULT_PATIENT_REGEX = r"^(?P<patient>patient\d+)"
SPLIT_BY: tuple[str, ...] = ("patient", "video")
_MIN_SIDE = 8
_CORRUPT_FIX = "re-export the file, or set on_bad_file: skip to leave it out"


# --------------------------------------------------------------------------- shared helpers


def sample_frames(n_frames: int, frame_stride: int = 1, max_frames: int | None = None) -> list[int]:
    """Frame indices ``0, s, 2s, ...`` below ``n_frames``; capped to ``max_frames`` picked evenly (first kept)."""
    idx = list(range(0, n_frames, frame_stride))
    if max_frames is not None and len(idx) > max_frames:
        picks = np.unique(np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int))
        idx = [idx[i] for i in picks]
    return idx


def _check_options(frame_stride: Any, max_frames: Any, scores: Any, split_by: Any) -> tuple[int, int | None, set[int]]:
    if isinstance(frame_stride, bool) or not isinstance(frame_stride, (int, np.integer)) or frame_stride < 1:
        raise ConfigError(f"frame_stride must be an integer >= 1, got {frame_stride!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 1):
        raise ConfigError(f"max_frames must be an integer >= 1 or null, got {max_frames!r}")
    try:
        allowed = {int(s) for s in scores}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scores must be a list of integers, got {scores!r}") from exc
    if not allowed:
        raise ConfigError("scores must not be empty")
    if split_by not in SPLIT_BY:
        raise ConfigError(f"split_by must be one of {list(SPLIT_BY)}, got {split_by!r}")
    return int(frame_stride), None if max_frames is None else int(max_frames), allowed


def _parse_score(text: str, csv_path: Path, name: str) -> int | None:
    """Score cell -> int; ``None`` for an empty cell; InputDataError for non-integers."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value != int(value):
        raise InputDataError(csv_path, f"score {text!r} of {name} is not an integer", "give scores as 0, 1, 2 or 3")
    return int(value)


def _read_table(path: Path, columns: Sequence[str], what: str):
    import pandas as pd

    if not path.is_file():
        raise InputDataError(path, f"{what} not found", "add the file or fix its name in the config "
                             "(relative to the dataset path)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputDataError(path, f"cannot read {what} ({exc})", f"write a CSV with columns {','.join(columns)}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputDataError(path, f"{what} lacks columns {missing} (has {list(frame.columns)})",
                             f"write a CSV with columns {','.join(columns)} or set the column names in the config")
    return frame


def _patient(stem: str, split_by: str, pattern: re.Pattern[str]) -> str:
    if split_by == "video":
        return stem
    match = pattern.search(stem)
    if match is not None and match.group("patient"):
        return match.group("patient")
    return stem


def _frame_records(path: Path, root: Path, n_frames: int, score: int, fmt: str, patient: str,
                   frame_stride: int, max_frames: int | None) -> list[Record]:
    stem = sanitize_id(path.stem)
    return [_record(id=f"{stem}_f{k:04d}", patient=patient, cls=str(score), fmt=fmt, unit="8bit",
                    source=_rel(root, path), slice=k)
            for k in sample_frames(n_frames, frame_stride, max_frames)]


def _to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale a clip to uint8 (rules in the module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind in "ui":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0:
            raise InputDataError(path, f"clip has negative values (min {lo})", "export 8-bit frames (0..255)")
        if hi <= 255:
            return arr.astype(np.uint8)
        if hi <= 65535:
            return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        raise InputDataError(path, f"clip values up to {hi} exceed 16 bits", "export 8-bit frames (0..255)")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputDataError(path, "clip holds NaN or infinite values", "fix the export")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise InputDataError(path, f"float clip values {lo:g}..{hi:g} are outside [0, 1] and [0, 255]",
                                 "export frames scaled to 0..1 or 0..255")
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    raise InputDataError(path, f"clip has unsupported data type {arr.dtype}", "export uint8 frames")


# --------------------------------------------------------------------------- .mat clips


def _video_layout(shape: tuple[int, ...]) -> str | None:
    """``"HWN"``, ``"HWCN"``, ``"HWNC"`` for a video-shaped array, else ``None``."""
    if len(shape) not in (3, 4) or min(shape[:2]) < _MIN_SIDE or 0 in shape:
        return None
    if len(shape) == 3:
        return "HWN"
    if shape[2] in (1, 3):
        return "HWCN"
    if shape[3] in (1, 3):
        return "HWNC"
    return None


def _to_nhwc(arr: np.ndarray, layout: str) -> np.ndarray:
    """Clip in ``layout`` -> ``(N, H, W, C)``."""
    if layout == "HWN":
        return np.moveaxis(arr, 2, 0)[..., None]
    if layout == "HWCN":
        return np.transpose(arr, (3, 0, 1, 2))
    return np.transpose(arr, (2, 0, 1, 3))


def _read_mat(path: Path, variable: str | None = None) -> np.ndarray:
    """Read the clip of a ``.mat`` file -> uint8 ``(N, H, W, C)`` (C 1 or 3)."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise InputDataError(path, f"cannot read .mat file ({exc})",
                             "save it with MATLAB's -v7 option, or convert it") from exc
    except Exception as exc:  # truncated / not a MAT file: ValueError, OSError, zlib.error, TypeError, ...
        raise InputDataError(path, f"cannot read .mat file ({type(exc).__name__}: {exc})", _CORRUPT_FIX) from exc
    arrays = {k: v for k, v in contents.items() if not k.startswith("__")}
    listing = ", ".join(f"{k} {'x'.join(map(str, getattr(v, 'shape', ())))} {getattr(v, 'dtype', type(v).__name__)}"
                        for k, v in arrays.items()) or "none"

    def usable(v: Any) -> bool:
        return isinstance(v, np.ndarray) and v.dtype.kind in "buif" and _video_layout(v.shape) is not None

    if variable is not None:
        if variable not in arrays:
            raise InputDataError(path, f"variable {variable!r} not found (variables: {listing})",
                                 "fix the dataset's variable setting")
        if not usable(arrays[variable]):
            raise InputDataError(path, f"variable {variable!r} is not a video array (variables: {listing}); "
                                 "expected H x W x N, H x W x 3 x N or H x W x N x 3 numbers",
                                 "fix the dataset's variable setting")
        name = variable
    else:
        candidates = sorted(((v.size, k) for k, v in arrays.items() if usable(v)), reverse=True)
        if not candidates:
            raise InputDataError(path, f"no video-shaped array (variables: {listing}); expected H x W x N, "
                                 "H x W x 3 x N or H x W x N x 3 numbers", "export the clip as such an array")
        if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
            raise InputDataError(path, f"several video arrays of the same size ({candidates[0][1]}, "
                                 f"{candidates[1][1]}; variables: {listing})", "set the dataset's variable")
        name = candidates[0][1]
    arr = arrays[name]
    return _to_uint8(np.ascontiguousarray(_to_nhwc(arr, _video_layout(arr.shape) or "")), path)


def _scores_index(csv_path: Path, root: Path, mats: list[Path]) -> dict[Path, int | None]:
    """Listed ``.mat`` file -> score (``None`` = empty cell); a listed file that is missing is an error."""
    frame = _read_table(csv_path, ("file", "score"), "scores CSV")
    by_rel = {_rel(root, p): p for p in mats}
    by_name: dict[str, list[Path]] = {}
    for p in mats:
        by_name.setdefault(p.name, []).append(p)
    out: dict[Path, int | None] = {}
    for name, score_text in zip(frame["file"].str.strip(), frame["score"]):
        if not name:
            raise InputDataError(csv_path, "scores CSV has a row with an empty file name", "fill in or remove it")
        key = name.replace("\\", "/")
        path = by_rel.get(key)
        if path is None:
            matches = by_name.get(Path(key).name, []) if "/" not in key else []
            if len(matches) > 1:
                raise InputDataError(csv_path, f"{name!r} matches several files: "
                                     f"{', '.join(_rel(root, m) for m in matches)}", "give the path relative to the dataset")
            if not matches:
                raise InputDataError(csv_path, f"lists {name!r}, which is missing (no such .mat under {root})",
                                     "add the file or remove its row")
            path = matches[0]
        out[path] = _parse_score(score_text, csv_path, name)
    return out


def scan_lus_mat(
    root: str | Path,
    *,
    scores_csv: str = "scores.csv",
    variable: str | None = None,
    frame_stride: int = 1,
    max_frames: int | None = None,
    scores: Iterable[int] = (0, 1, 2, 3),
    split_by: str = "patient",
    patient_regex: str | None = None,
    on_bad_file: str = "error",
) -> tuple[list[Record], list[Skipped]]:
    """Scan ``.mat`` LUS clips (recursive) scored by ``scores_csv`` (columns file,score; relative to ``root``).

    ``file`` is a path relative to ``root`` or a unique file name. Unlisted
    ``.mat`` files and rows with an empty score are ignored (logged). Each clip
    is read fully (``variable``, else its largest video-shaped array); one
    record per frame ``0, frame_stride, ...`` capped evenly at ``max_frames``.
    Bad files (unreadable, no video array, score outside ``scores``) raise
    :class:`InputDataError` or are skipped (``on_bad_file="skip"``); a listed
    file that is missing always raises. ``format`` = ``lus_mat``.
    """
    root = Path(root)
    stride, cap, allowed = _check_options(frame_stride, max_frames, scores, split_by)
    pattern = _compile_patient_regex(patient_regex or DEFAULT_PATIENT_REGEX)
    assert pattern is not None
    bad = _BadFiles(root, on_bad_file)
    mats = _list_files(root, MAT_SUFFIXES)
    csv_path = root / scores_csv
    listed = _scores_index(csv_path, root, mats)
    unlisted = [p for p in mats if p not in listed]
    if unlisted:
        logger.warning("%d .mat files are not in %s (ignored), e.g. %s", len(unlisted), scores_csv,
                       _rel(root, unlisted[0]))
    records: list[Record] = []
    for path in sorted(listed, key=lambda p: p.as_posix()):
        score = listed[path]
        if score is None:
            logger.warning("%s has no score in %s (ignored)", _rel(root, path), scores_csv)
            continue
        try:
            if score not in allowed:
                raise InputDataError(path, f"score {score} is not one of the configured scores {sorted(allowed)}",
                                     "fix the score in the CSV or add it to the dataset's scores")
            clip = _read_mat(path, variable)
        except InputDataError as err:
            bad.report(err)
            continue
        records.extend(_frame_records(path, root, clip.shape[0], score, "lus_mat",
                                      _patient(path.stem, split_by, pattern), stride, cap))
        del clip
    if not records:
        raise InputDataError(root, "no usable .mat clips", f"list .mat files with scores in {scores_csv}")
    check_unique_ids(records, root)
    return records, bad.skipped


# --------------------------------------------------------------------------- video files


def _decode_video(path: Path) -> np.ndarray:
    """Decode every frame -> uint8 ``(N, H, W, C)`` (C 1 or 3); GIF via Pillow, others via PyAV."""
    import imageio.v3 as iio

    frames: list[np.ndarray] = []
    try:
        if path.suffix.lower() == ".gif":
            for frame in iio.imiter(path, plugin="pillow"):
                frames.append(np.asarray(frame))
        else:
            for frame in iio.imiter(path, plugin="pyav"):
                frames.append(np.asarray(frame))
    except Exception as exc:  # av.error.InvalidDataError, OSError, ValueError, ...
        raise InputDataError(path, f"cannot decode video ({type(exc).__name__}: {exc})", _CORRUPT_FIX) from exc
    if not frames:
        raise InputDataError(path, "video has no frames", _CORRUPT_FIX)
    frames = uniform_channels(frames)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputDataError(path, f"video frames differ in size: {sorted(shapes)}", _CORRUPT_FIX)
    return _to_uint8(np.stack(frames), path)


def uniform_channels(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Give every frame the same channel layout ``(H, W, C)``, C = 1 or 3.

    Alpha is dropped (RGBA -> RGB, LA -> L) and, when a video mixes gray and colour
    frames, gray ones are replicated to 3 channels. Animated GIFs decode that way:
    the first frame RGB and the rest RGBA (seen in the POCUS sample).
    """
    out = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = frame[..., None]
        if frame.shape[-1] == 4:
            frame = frame[..., :3]
        elif frame.shape[-1] == 2:
            frame = frame[..., :1]
        out.append(frame)
    if len({f.shape[-1] for f in out}) > 1:
        out = [np.repeat(f, 3, axis=-1) if f.shape[-1] == 1 else f for f in out]
    return out


def scan_lus_videos(
    root: str | Path,
    *,
    labels_csv: str = "labels.csv",
    path_column: str = "path",
    score_column: str = "lung_severity_score",
    frame_stride: int = 1,
    max_frames: int | None = None,
    scores: Iterable[int] = (0, 1, 2, 3),
    split_by: str = "patient",
    patient_regex: str | None = None,
    on_bad_file: str = "error",
    files: Iterable[str] | None = None,
) -> tuple[list[Record], list[Skipped]]:
    """Scan LUS videos (gif mp4 mov mpeg mpg avi m4v, any case) listed in ``labels_csv`` (POCUS layout).

    ``path_column`` holds paths relative to ``root``; ``score_column`` the
    score (rows with an empty score are ignored, logged). ``files`` optionally
    keeps only the rows whose path is in it. Each video is decoded fully to
    count frames. A listed file that is missing always raises; undecodable
    videos, unsupported suffixes and scores outside ``scores`` are bad files.
    ``patient``: the ``patient_regex`` group (default ``^(?P<patient>patient\\d+)``)
    in the file stem, else the stem (``split_by="video"``: always the stem).
    ``format`` = ``lus_video``.
    """
    root = Path(root)
    stride, cap, allowed = _check_options(frame_stride, max_frames, scores, split_by)
    pattern = _compile_patient_regex(patient_regex or DEFAULT_PATIENT_REGEX)
    assert pattern is not None
    bad = _BadFiles(root, on_bad_file)
    csv_path = root / labels_csv
    frame = _read_table(csv_path, (path_column, score_column), "labels CSV")
    keep = None if files is None else {str(f).replace("\\", "/") for f in files}
    rows: list[tuple[Path, int | None]] = []
    for rel, score_text in zip(frame[path_column].str.strip(), frame[score_column]):
        rel = rel.replace("\\", "/")
        if keep is not None and rel not in keep:
            continue
        if not rel:
            raise InputDataError(csv_path, "labels CSV has a row with an empty path", "fill in or remove it")
        path = root / rel
        if not path.is_file():
            raise InputDataError(csv_path, f"lists {rel!r}, which is missing ({path} not found)",
                                 "add the file or remove its row")
        rows.append((path, _parse_score(score_text, csv_path, rel)))
    listed = {p for p, _ in rows}
    unlisted = [p for p in _list_files(root, VIDEO_SUFFIXES) if p not in listed]
    if unlisted and keep is None:
        logger.warning("%d video files are not in %s (ignored), e.g. %s", len(unlisted), labels_csv,
                       _rel(root, unlisted[0]))
    records: list[Record] = []
    n_unscored = 0
    for path, score in rows:
        if score is None:
            n_unscored += 1
            logger.info("%s has no score in %s (ignored)", _rel(root, path), labels_csv)
            continue
        try:
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise InputDataError(path, f"unsupported video type {path.suffix!r}; expected one of "
                                     f"{sorted(VIDEO_SUFFIXES)}", "convert the video to mp4")
            if score not in allowed:
                raise InputDataError(path, f"score {score} is not one of the configured scores {sorted(allowed)}",
                                     "fix the score in the CSV or add it to the dataset's scores")
            clip = _decode_video(path)
        except InputDataError as err:
            bad.report(err)
            continue
        records.extend(_frame_records(path, root, clip.shape[0], score, "lus_video",
                                      _patient(path.stem, split_by, pattern), stride, cap))
        del clip
    if n_unscored:
        logger.warning("%d rows of %s have no %s (ignored)", n_unscored, labels_csv, score_column)
    if not records:
        raise InputDataError(csv_path, "no usable scored videos", f"list videos with a {score_column}")
    check_unique_ids(records, root)
    return records, bad.skipped


# --------------------------------------------------------------------------- reload one frame


@functools.lru_cache(maxsize=2)
def _cached_clip(path: str, mtime_ns: int, size: int, fmt: str, variable: str | None) -> tuple[np.ndarray, bool]:
    """Decoded clip ``(N, H, W, C)`` stored as ``(N, H, W, 1)`` when RGB channels are equal; flag = was RGB."""
    p = Path(path)
    clip = _read_mat(p, variable) if fmt == "lus_mat" else _decode_video(p)
    rgb = clip.shape[-1] == 3
    if rgb and (clip[..., 0] == clip[..., 1]).all() and (clip[..., 1] == clip[..., 2]).all():
        clip = np.ascontiguousarray(clip[..., :1])  # gray stored as RGB: keep a third of the memory
    clip.setflags(write=False)
    return clip, rgb


def clear_cache() -> None:
    """Drop the clips cached by :func:`load_frame`."""
    _cached_clip.cache_clear()


def load_frame(root: str | Path, row: Mapping[str, Any] | Any, *, variable: str | None = None) -> np.ndarray:
    """Reload frame ``row["slice"]`` of an ``lus_mat``/``lus_video`` row: float32 ``(H, W, C)`` in 0..255.

    C = 3 when the source is RGB (all videos decoded by PyAV, ``x 3`` .mat
    clips), else 1. The last 2 clips read are cached (frames of a clip are
    adjacent in a manifest). ``variable`` as in :func:`scan_lus_mat` (``None``
    picks the largest video-shaped array, as the scan did by default).
    """
    path = Path(root) / _field(row, "source")
    fmt = _field(row, "format")
    if fmt not in ("lus_mat", "lus_video"):
        raise ConfigError(f"load_frame needs an lus_mat or lus_video row, got format {fmt!r}")
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputDataError(path, f"cannot read file ({exc})", "re-run the ingest step") from exc
    clip, rgb = _cached_clip(str(path), stat.st_mtime_ns, stat.st_size, fmt, variable)
    index = int(row["slice"])
    if not 0 <= index < clip.shape[0]:
        raise InputDataError(path, f"frame {index} out of range (clip has {clip.shape[0]} frames)",
                             "re-run the ingest step")
    frame = clip[index].astype(np.float32)
    if rgb and frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame


# --------------------------------------------------------------------------- sector crop


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
