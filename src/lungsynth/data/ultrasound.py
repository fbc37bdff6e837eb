"""Lung-ultrasound readers (MATLAB ``.mat`` clips, video files) and sector cropping.

Readers return ``(records, skipped)`` like :mod:`lungsynth.data.readers`: one
record per sampled frame with the manifest columns
(:data:`lungsynth.data.readers.RECORD_COLUMNS`), ``class`` = the lung severity
score as text (``"0"``..``"3"``), ``unit`` = ``8bit``, ``slice`` = the frame
index in the clip, no masks. ``patient`` is the patient (``split_by="patient"``)
or the clip (``split_by="video"``), so splits never cut through a clip.

Accepted ``.mat`` arrays (numeric, H and W >= 8), read by the ``auto`` rule:

* ndim 2: ``H x W``, one gray frame;
* ndim 3: ``H x W x 3`` is one RGB frame (the MATLAB image convention of
  ``imread``/``imshow``), ``H x W x 1`` one gray frame, ``H x W x N`` (N not
  1 or 3) N gray frames;
* ndim 4: ``H x W x C x N`` (C on axis 3 in {1, 3}) or else ``H x W x N x C``
  (C on axis 4 in {1, 3}); where both axes 3 and 4 are 1 or 3 (e.g.
  ``H x W x 3 x 3``, ``H x W x 3 x 1``) the layout is ambiguous and the file is
  an error asking for ``mat_layout`` (``H x W x 1 x 1`` is one gray frame
  either way).

The per-dataset setting ``mat_layout`` (:data:`MAT_LAYOUTS`; default
``auto``) fixes the layout of the arrays with its number of axes: ``HW``
(2-D), ``HWN`` (3-D frames: an ``H x W x 3`` array is then 3 gray frames),
``HWC`` (3-D, one frame of 1 or 3 channels), ``HWCN`` / ``HWNC`` (4-D);
arrays with another number of axes follow the auto rule, so a dataset may mix
``H x W x N`` and ``H x W x 3 x N`` clips. The scan records per file which
variable and layout it read (:class:`ScanRecords`); the ingest step writes
them to ``files.csv`` and the preprocess step reloads frames with exactly
those (:func:`load_frame`).

Without ``variable`` the largest 3-D/4-D array is the clip (a 2-D array only
when the file has none). Values uint8 / integer 0..255 (uint16 above 255:
scaled by 1/257), or float in [0, 1] (scaled by 255) or [0, 255]. A file that
is empty, not a MAT-file (e.g. text) or MATLAB v7.3 (HDF5) is a bad file with
an error saying so.
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
from lungsynth.data.readers import (
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
    "MAT_SUFFIXES", "MAT_LAYOUTS", "VIDEO_SUFFIXES", "DEFAULT_PATIENT_REGEX", "ScanRecords", "scan_lus_mat",
    "scan_lus_videos", "load_frame", "clear_cache", "sector_bbox", "crop_to_sector", "center_pad", "sample_frames",
]

MAT_SUFFIXES: frozenset[str] = frozenset({".mat"})
MAT_LAYOUTS: tuple[str, ...] = ("auto", "HWN", "HWCN", "HWNC", "HW", "HWC")
"""Values of the ``mat_layout`` setting (see the module docstring)."""
VIDEO_SUFFIXES: frozenset[str] = frozenset({".gif", ".mp4", ".mov", ".mpeg", ".mpg", ".avi", ".m4v"})
DEFAULT_PATIENT_REGEX = r"^(?P<patient>patient\d+)"
SPLIT_BY: tuple[str, ...] = ("patient", "video")
_MIN_SIDE = 8
_CORRUPT_FIX = "re-export the file, or set on_bad_file: skip to leave it out"
_NOT_MAT_FIX = ("save the clip from MATLAB (save(file, 'video', '-v7')) or with scipy.io.savemat, or remove the file "
                "or set on_bad_file: skip to leave it out")


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


class ScanRecords(list):
    """The records of a scan (a plain list of records) plus ``readings``: how each file was read.

    ``readings[source]`` (source as in the records) is a dict with ``format``,
    ``frames`` (frames in the file), ``how_read`` (short text, the same for
    files read the same way; no file names or identifiers), ``variable`` and
    ``layout`` (``.mat`` only: the array and the layout it was read in, which
    :func:`load_frame` takes back) and ``resolved_by`` (``"auto rule"`` where
    an ambiguous ``H x W x 3`` array was read as one RGB frame, ``"mat_layout"``
    where the setting decided, else ``""``). Kept off the records so that they
    hold exactly the manifest columns.
    """

    def __init__(self, records: Iterable[Record] = (), readings: Mapping[str, dict[str, Any]] | None = None):
        super().__init__(records)
        self.readings: dict[str, dict[str, Any]] = dict(readings or {})


_LAYOUT_NDIM = {"HW": 2, "HWN": 3, "HWC": 3, "HWCN": 4, "HWNC": 4}
_MAT_SHAPES = "expected H x W, H x W x N, H x W x 3, H x W x 3 x N or H x W x N x 3 numbers"
_EMPTY_FIX = "re-export or re-copy the file, or set on_bad_file: skip to leave it out"


def _check_mat_layout(mat_layout: Any) -> str:
    if mat_layout is None:
        return "auto"
    if mat_layout not in MAT_LAYOUTS:
        raise ConfigError(f"mat_layout must be one of {list(MAT_LAYOUTS)}, got {mat_layout!r}")
    return str(mat_layout)


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _video_shaped(shape: tuple[int, ...]) -> bool:
    """2-D to 4-D, H and W >= 8, no empty axis; 4-D needs its 3rd or 4th axis of size 1 or 3 (channels)."""
    if len(shape) not in (2, 3, 4) or min(shape[:2]) < _MIN_SIDE or 0 in shape:
        return False
    return len(shape) < 4 or shape[2] in (1, 3) or shape[3] in (1, 3)


def _resolve_layout(path: Path, name: str, shape: tuple[int, ...], mat_layout: str = "auto") -> tuple[str, str]:
    """``(layout, resolved_by)`` of a video-shaped array (rules in the module docstring)."""
    ndim = len(shape)
    where = f"variable {name!r} ({_shape_text(shape)})"
    if mat_layout != "auto" and _LAYOUT_NDIM[mat_layout] == ndim:
        channel_axis = {"HWC": 2, "HWCN": 2, "HWNC": 3}.get(mat_layout)
        if channel_axis is not None and shape[channel_axis] not in (1, 3):
            raise InputDataError(path, f"{where} does not fit mat_layout {mat_layout}: axis {channel_axis + 1} has "
                                 f"{shape[channel_axis]} entries, not 1 or 3 channels",
                                 "fix the dataset's mat_layout (or set it to auto)")
        return mat_layout, "mat_layout"
    if ndim == 2:
        return "HW", ""
    if ndim == 3:
        if shape[2] == 3:
            return "HWC", "auto rule"  # the MATLAB image convention (imread, imshow): one RGB frame
        return ("HWC" if shape[2] == 1 else "HWN"), ""
    if shape[2] in (1, 3) and shape[3] in (1, 3) and shape[2:] != (1, 1):
        raise InputDataError(path, f"{where} is ambiguous: H x W x C x N ({shape[3]} frame(s) of {shape[2]} "
                             f"channel(s)) or H x W x N x C ({shape[2]} frame(s) of {shape[3]} channel(s))",
                             "set the dataset's mat_layout to HWCN or HWNC")
    return ("HWCN" if shape[2] in (1, 3) else "HWNC"), ""


def _to_nhwc(arr: np.ndarray, layout: str) -> np.ndarray:
    """Array in ``layout`` -> ``(N, H, W, C)``."""
    if layout == "HW":
        return arr[None, :, :, None]
    if layout == "HWC":
        return arr[None]
    if layout == "HWN":
        return np.moveaxis(arr, 2, 0)[..., None]
    if layout == "HWCN":
        return np.transpose(arr, (3, 0, 1, 2))
    return np.transpose(arr, (2, 0, 1, 3))


def _how_read_mat(name: str, arr: np.ndarray, layout: str, resolved_by: str) -> str:
    """Short description of a reading, without counts (the same for files read the same way)."""
    channels = 1 if layout in ("HW", "HWN") else arr.shape[2 if layout in ("HWC", "HWCN") else 3]
    colour = "RGB" if channels == 3 else "gray"
    dims = {"HW": "H x W", "HWC": f"H x W x {channels}", "HWN": "H x W x N",
            "HWCN": f"H x W x {channels} x N", "HWNC": f"H x W x N x {channels}"}[layout]
    what = f"one {colour} frame" if layout in ("HW", "HWC") else f"{colour} frames"
    text = f".mat variable {name!r} {arr.dtype} {dims}: {what}"
    if resolved_by == "auto rule":
        text += " (auto rule; mat_layout: HWN reads it as 3 gray frames)"
    elif resolved_by:
        text += f" (mat_layout {layout})"
    return text


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    printable = sum(b >= 32 or b in (9, 10, 13) for b in head)
    return printable >= 0.95 * len(head)


def _empty_check(path: Path) -> None:
    """InputDataError for a missing or zero-byte file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputDataError(path, f"cannot read file ({exc})", "check the file and its permissions") from exc
    if size == 0:
        raise InputDataError(path, "file is empty (0 bytes)", _EMPTY_FIX)


def _mat_failure(path: Path, exc: Exception) -> InputDataError:
    """scipy's failure to read ``path`` -> an error saying whether it is a MAT-file at all.

    MAT v5/v7 files start with a 128-byte header: 116 bytes of text beginning
    ``MATLAB 5.0 MAT-file``, then the version and ``IM``/``MI`` at bytes 126-127
    (v7.3 files are HDF5 with the same header); v4 files have no header, so
    scipy reads a file without ``MATLAB`` at the start as v4.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        head = b""
    cause = f"{type(exc).__name__}: {exc}"
    if head.startswith(b"MATLAB"):
        if len(head) < 128:
            return InputDataError(path, f"cannot read .mat file: truncated ({len(head)} bytes, shorter than the "
                                  "128-byte MAT-file header)", _CORRUPT_FIX)
        if head[126:128] not in (b"IM", b"MI"):
            return InputDataError(path, "not a MATLAB .mat file: it starts with 'MATLAB' but has no MAT-file header "
                                  "(no IM/MI byte-order mark at byte 126)", _NOT_MAT_FIX)
        return InputDataError(path, f"cannot read .mat file, truncated or corrupt ({cause})", _CORRUPT_FIX)
    if _looks_like_text(head):
        return InputDataError(path, "not a MATLAB .mat file: it is text (a MAT-file starts with the header "
                              "'MATLAB 5.0 MAT-file' or, v4, with binary numbers)", _NOT_MAT_FIX)
    return InputDataError(path, "not a MATLAB .mat file: no 'MATLAB 5.0 MAT-file' header, and not readable as a "
                          f"headerless v4 file either ({cause})", _NOT_MAT_FIX)


def _read_mat_info(path: Path, variable: str | None = None,
                   mat_layout: str = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """Read the clip of a ``.mat`` file -> (uint8 ``(N, H, W, C)`` with C 1 or 3, reading for :class:`ScanRecords`)."""
    import scipy.io

    _empty_check(path)
    try:
        contents = scipy.io.loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise InputDataError(path, f"cannot read .mat file: MATLAB v7.3 (HDF5) files are not supported ({exc})",
                             "save it with MATLAB's -v7 option, or convert it") from exc
    except Exception as exc:  # truncated / not a MAT file: ValueError, OSError, IndexError, zlib.error, ...
        raise _mat_failure(path, exc) from exc
    arrays = {k: v for k, v in contents.items() if not k.startswith("__")}
    listing = ", ".join(f"{k} {_shape_text(getattr(v, 'shape', ()))} {getattr(v, 'dtype', type(v).__name__)}"
                        for k, v in arrays.items()) or "none"

    def usable(v: Any) -> bool:
        return isinstance(v, np.ndarray) and v.dtype.kind in "buif" and _video_shaped(v.shape)

    if variable is not None:
        if variable not in arrays:
            raise InputDataError(path, f"variable {variable!r} not found (variables: {listing})",
                                 "fix the dataset's variable setting")
        if not usable(arrays[variable]):
            raise InputDataError(path, f"variable {variable!r} is not a video array (variables: {listing}); "
                                 f"{_MAT_SHAPES}", "fix the dataset's variable setting")
        name = variable
    else:
        # the largest array with frames or channels (3-D, 4-D); a 2-D one only when there is none
        candidates = sorted(((v.ndim > 2, v.size, k) for k, v in arrays.items() if usable(v)), reverse=True)
        if not candidates:
            raise InputDataError(path, f"no video-shaped array (variables: {listing}); {_MAT_SHAPES}",
                                 "export the clip as such an array")
        if len(candidates) > 1 and candidates[0][:2] == candidates[1][:2]:
            raise InputDataError(path, f"several video arrays of the same size ({candidates[0][2]}, "
                                 f"{candidates[1][2]}; variables: {listing})", "set the dataset's variable")
        name = candidates[0][2]
    arr = arrays[name]
    layout, resolved_by = _resolve_layout(path, name, arr.shape, mat_layout)
    clip = _to_uint8(np.ascontiguousarray(_to_nhwc(arr, layout)), path)
    reading = {"format": "lus_mat", "frames": int(clip.shape[0]),
               "how_read": _how_read_mat(name, arr, layout, resolved_by), "variable": name, "layout": layout,
               "resolved_by": resolved_by}
    return clip, reading


def _read_mat(path: Path, variable: str | None = None, mat_layout: str = "auto") -> np.ndarray:
    """Read the clip of a ``.mat`` file -> uint8 ``(N, H, W, C)`` (C 1 or 3)."""
    return _read_mat_info(path, variable, mat_layout)[0]


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
    mat_layout: str = "auto",
    frame_stride: int = 1,
    max_frames: int | None = None,
    scores: Iterable[int] = (0, 1, 2, 3),
    split_by: str = "patient",
    patient_regex: str | None = None,
    on_bad_file: str = "error",
    follow_links_outside: bool = False,
) -> tuple[list[Record], list[Skipped]]:
    """Scan ``.mat`` LUS clips (recursive) scored by ``scores_csv`` (columns file,score; relative to ``root``).

    ``file`` is a path relative to ``root`` or a unique file name. Unlisted
    ``.mat`` files and rows with an empty score are ignored (logged). Each clip
    is read fully (``variable``, else its largest video-shaped array, in the
    layout of ``mat_layout`` or the auto rule: module docstring); one record
    per frame ``0, frame_stride, ...`` capped evenly at ``max_frames``. Bad
    files (empty, not a MAT-file, no video array, ambiguous layout, score
    outside ``scores``) raise :class:`InputDataError` or are skipped
    (``on_bad_file="skip"``); a listed file that is missing always raises.
    ``format`` = ``lus_mat``. Returns :class:`ScanRecords` (how each file was read). The folder walk
    follows symbolic links as :func:`lungsynth.data.readers._list_files` does (``follow_links_outside``).
    """
    root = Path(root)
    stride, cap, allowed = _check_options(frame_stride, max_frames, scores, split_by)
    mat_layout = _check_mat_layout(mat_layout)
    pattern = _compile_patient_regex(patient_regex or DEFAULT_PATIENT_REGEX)
    assert pattern is not None
    bad = _BadFiles(root, on_bad_file)
    mats = _list_files(root, MAT_SUFFIXES, follow_links_outside=follow_links_outside)
    csv_path = root / scores_csv
    listed = _scores_index(csv_path, root, mats)
    unlisted = [p for p in mats if p not in listed]
    if unlisted:
        logger.warning("%d .mat files are not in %s (ignored), e.g. %s", len(unlisted), scores_csv,
                       _rel(root, unlisted[0]))
    records = ScanRecords()
    for path in sorted(listed, key=lambda p: p.as_posix()):
        score = listed[path]
        if score is None:
            logger.warning("%s has no score in %s (ignored)", _rel(root, path), scores_csv)
            continue
        try:
            if score not in allowed:
                raise InputDataError(path, f"score {score} is not one of the configured scores {sorted(allowed)}",
                                     "fix the score in the CSV or add it to the dataset's scores")
            clip, reading = _read_mat_info(path, variable, mat_layout)
        except InputDataError as err:
            bad.report(err)
            continue
        records.extend(_frame_records(path, root, clip.shape[0], score, "lus_mat",
                                      _patient(path.stem, split_by, pattern), stride, cap))
        records.readings[_rel(root, path)] = reading
        del clip
    if not records:
        raise InputDataError(root, "no usable .mat clips", f"list .mat files with scores in {scores_csv}")
    check_unique_ids(records, root)
    by_auto = [src for src, r in records.readings.items() if r["resolved_by"] == "auto rule"]
    if by_auto:
        logger.warning("%d .mat files hold an H x W x 3 array, read as one RGB frame each (auto rule), e.g. %s; "
                       "set the dataset's mat_layout: HWN if they are 3-frame gray clips", len(by_auto), by_auto[0])
    return records, bad.skipped


# --------------------------------------------------------------------------- video files


def _decode_video(path: Path) -> np.ndarray:
    """Decode every frame -> uint8 ``(N, H, W, C)`` (C 1 or 3); GIF via Pillow, others via PyAV."""
    return _decode_video_info(path)[0]


def _decode_video_info(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`_decode_video` and the reading (see :class:`ScanRecords`)."""
    import imageio.v3 as iio

    _empty_check(path)
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
    decoded = sorted({1 if f.ndim == 2 else f.shape[-1] for f in frames})
    frames = uniform_channels(frames)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputDataError(path, f"video frames differ in size: {sorted(shapes)}", _CORRUPT_FIX)
    clip = _to_uint8(np.stack(frames), path)
    names = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}
    how = (f"{path.suffix.lower().lstrip('.')} video via {'Pillow' if path.suffix.lower() == '.gif' else 'PyAV'}: "
           f"{'RGB' if clip.shape[-1] == 3 else 'gray'} frames")
    if decoded != [clip.shape[-1]]:
        how += f" (decoded as {' + '.join(names.get(c, str(c)) for c in decoded)})"
    reading = {"format": "lus_video", "frames": int(clip.shape[0]), "how_read": how, "variable": "", "layout": "",
               "resolved_by": ""}
    return clip, reading


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
    follow_links_outside: bool = False,
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
    ``format`` = ``lus_video``. Returns :class:`ScanRecords` (how each file was read). Listed videos
    are read where the CSV points; the walk that finds unlisted ones follows links as
    :func:`lungsynth.data.readers._list_files` does (``follow_links_outside``).
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
    unlisted = [p for p in _list_files(root, VIDEO_SUFFIXES, follow_links_outside=follow_links_outside) if p not in listed]
    if unlisted and keep is None:
        logger.warning("%d video files are not in %s (ignored), e.g. %s", len(unlisted), labels_csv,
                       _rel(root, unlisted[0]))
    records = ScanRecords()
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
            clip, reading = _decode_video_info(path)
        except InputDataError as err:
            bad.report(err)
            continue
        records.extend(_frame_records(path, root, clip.shape[0], score, "lus_video",
                                      _patient(path.stem, split_by, pattern), stride, cap))
        records.readings[_rel(root, path)] = reading
        del clip
    if n_unscored:
        logger.warning("%d rows of %s have no %s (ignored)", n_unscored, labels_csv, score_column)
    if not records:
        raise InputDataError(csv_path, "no usable scored videos", f"list videos with a {score_column}")
    check_unique_ids(records, root)
    return records, bad.skipped


# --------------------------------------------------------------------------- reload one frame


@functools.lru_cache(maxsize=2)
def _cached_clip(path: str, mtime_ns: int, size: int, fmt: str, variable: str | None,
                 mat_layout: str = "auto") -> tuple[np.ndarray, bool]:
    """Decoded clip ``(N, H, W, C)`` stored as ``(N, H, W, 1)`` when RGB channels are equal; flag = was RGB."""
    p = Path(path)
    clip = _read_mat(p, variable, mat_layout) if fmt == "lus_mat" else _decode_video(p)
    rgb = clip.shape[-1] == 3
    if rgb and (clip[..., 0] == clip[..., 1]).all() and (clip[..., 1] == clip[..., 2]).all():
        clip = np.ascontiguousarray(clip[..., :1])  # gray stored as RGB: keep a third of the memory
    clip.setflags(write=False)
    return clip, rgb


def clear_cache() -> None:
    """Drop the clips cached by :func:`load_frame`."""
    _cached_clip.cache_clear()


def load_frame(root: str | Path, row: Mapping[str, Any] | Any, *, variable: str | None = None,
               mat_layout: str | None = "auto") -> np.ndarray:
    """Reload frame ``row["slice"]`` of an ``lus_mat``/``lus_video`` row: float32 ``(H, W, C)`` in 0..255.

    C = 3 when the source is RGB (all videos decoded by PyAV, ``x 3`` .mat
    clips), else 1. The last 2 clips read are cached (frames of a clip are
    adjacent in a manifest). ``variable`` and ``mat_layout`` as in
    :func:`scan_lus_mat` (``None``/``"auto"`` pick the largest video-shaped
    array and the auto rule, as the scan did by default); the preprocess step
    passes the variable and layout the scan recorded in ``files.csv``.
    """
    path = Path(root) / _field(row, "source")
    fmt = _field(row, "format")
    if fmt not in ("lus_mat", "lus_video"):
        raise ConfigError(f"load_frame needs an lus_mat or lus_video row, got format {fmt!r}")
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputDataError(path, f"cannot read file ({exc})", "re-run the ingest step") from exc
    clip, rgb = _cached_clip(str(path), stat.st_mtime_ns, stat.st_size, fmt, variable or None,
                             _check_mat_layout(mat_layout or None))
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
