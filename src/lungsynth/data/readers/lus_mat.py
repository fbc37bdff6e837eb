"""Lung-ultrasound ``.mat`` clips (MATLAB v4/v5/v7 files) scored by a CSV.

Layout: ``<root>/**/<clip>.mat`` (recursive) and ``<root>/scores.csv`` with
columns ``file,score`` (``file`` relative to the root or a unique file name).
One record per sampled frame with the manifest columns
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
those (:func:`lungsynth.data.readers.load_frame`).

Without ``variable`` the largest 3-D/4-D array is the clip (a 2-D array only
when the file has none). Values uint8 / integer 0..255 (uint16 above 255:
scaled by 1/257), or float in [0, 1] (scaled by 255) or [0, 255]. A file that
is empty, not a MAT-file (e.g. text) or MATLAB v7.3 (HDF5) is a bad file with
an error saying so.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lungsynth.data.readers import common
from lungsynth.errors import ConfigError, InputDataError

logger = logging.getLogger(__name__)

MAT_SUFFIXES: frozenset[str] = frozenset({".mat"})
MAT_LAYOUTS: tuple[str, ...] = ("auto", "HWN", "HWCN", "HWNC", "HW", "HWC")
"""Values of the ``mat_layout`` setting (see the module docstring)."""
_MIN_SIDE = 8
_NOT_MAT_FIX = ("save the clip from MATLAB (save(file, 'video', '-v7')) or with scipy.io.savemat, or remove the file "
                "or set on_bad_file: skip to leave it out")
_LAYOUT_NDIM = {"HW": 2, "HWN": 3, "HWC": 3, "HWCN": 4, "HWNC": 4}
_MAT_SHAPES = "expected H x W, H x W x N, H x W x 3, H x W x 3 x N or H x W x N x 3 numbers"


def check_mat_layout(mat_layout: Any) -> str:
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
                                  "128-byte MAT-file header)", common.CLIP_CORRUPT_FIX)
        if head[126:128] not in (b"IM", b"MI"):
            return InputDataError(path, "not a MATLAB .mat file: it starts with 'MATLAB' but has no MAT-file header "
                                  "(no IM/MI byte-order mark at byte 126)", _NOT_MAT_FIX)
        return InputDataError(path, f"cannot read .mat file, truncated or corrupt ({cause})", common.CLIP_CORRUPT_FIX)
    if _looks_like_text(head):
        return InputDataError(path, "not a MATLAB .mat file: it is text (a MAT-file starts with the header "
                              "'MATLAB 5.0 MAT-file' or, v4, with binary numbers)", _NOT_MAT_FIX)
    return InputDataError(path, "not a MATLAB .mat file: no 'MATLAB 5.0 MAT-file' header, and not readable as a "
                          f"headerless v4 file either ({cause})", _NOT_MAT_FIX)


def _read_mat_info(path: Path, variable: str | None = None,
                   mat_layout: str = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """Read the clip of a ``.mat`` file -> (uint8 ``(N, H, W, C)`` with C 1 or 3, reading for :class:`ScanRecords`)."""
    import scipy.io

    common.check_clip_file(path)
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
    clip = common.clip_to_uint8(np.ascontiguousarray(_to_nhwc(arr, layout)), path)
    reading = {"format": "lus_mat", "frames": int(clip.shape[0]),
               "how_read": _how_read_mat(name, arr, layout, resolved_by), "variable": name, "layout": layout,
               "resolved_by": resolved_by}
    return clip, reading


def read_mat(path: Path, variable: str | None = None, mat_layout: str = "auto") -> np.ndarray:
    """Read the clip of a ``.mat`` file -> uint8 ``(N, H, W, C)`` (C 1 or 3)."""
    return _read_mat_info(path, variable, mat_layout)[0]


def _scores_index(csv_path: Path, root: Path, mats: list[Path]) -> dict[Path, int | None]:
    """Listed ``.mat`` file -> score (``None`` = empty cell); a listed file that is missing is an error."""
    frame = common.read_table(csv_path, ("file", "score"), "scores CSV")
    by_rel = {common.rel_path(root, p): p for p in mats}
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
                                     f"{', '.join(common.rel_path(root, m) for m in matches)}",
                                     "give the path relative to the dataset")
            if not matches:
                raise InputDataError(csv_path, f"lists {name!r}, which is missing (no such .mat under {root})",
                                     "add the file or remove its row")
            path = matches[0]
        out[path] = common.parse_score(score_text, csv_path, name)
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
) -> tuple[list[common.Record], list[common.Skipped]]:
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
    follows symbolic links as :func:`~lungsynth.data.readers.common.list_files` does (``follow_links_outside``).
    """
    root = Path(root)
    stride, cap, allowed = common.check_clip_options(frame_stride, max_frames, scores, split_by)
    mat_layout = check_mat_layout(mat_layout)
    pattern = common.compile_patient_regex(patient_regex or common.DEFAULT_PATIENT_REGEX)
    assert pattern is not None
    bad = common.BadFiles(root, on_bad_file)
    mats = common.list_files(root, MAT_SUFFIXES, follow_links_outside=follow_links_outside)
    csv_path = root / scores_csv
    listed = _scores_index(csv_path, root, mats)
    unlisted = [p for p in mats if p not in listed]
    if unlisted:
        logger.warning("%d .mat files are not in %s (ignored), e.g. %s", len(unlisted), scores_csv,
                       common.rel_path(root, unlisted[0]))
    read = functools.partial(_read_mat_info, variable=variable, mat_layout=mat_layout)
    records = common.ScanRecords()
    for path in sorted(listed, key=lambda p: p.as_posix()):
        score = listed[path]
        if score is None:
            logger.warning("%s has no score in %s (ignored)", common.rel_path(root, path), scores_csv)
            continue
        common.add_clip(records, bad, path, root=root, score=score, allowed=allowed, read=read, fmt="lus_mat",
                 split_by=split_by, pattern=pattern, frame_stride=stride, max_frames=cap)
    if not records:
        raise InputDataError(root, "no usable .mat clips", f"list .mat files with scores in {scores_csv}")
    common.check_unique_ids(records, root)
    by_auto = [src for src, r in records.readings.items() if r["resolved_by"] == "auto rule"]
    if by_auto:
        logger.warning("%d .mat files hold an H x W x 3 array, read as one RGB frame each (auto rule), e.g. %s; "
                       "set the dataset's mat_layout: HWN if they are 3-frame gray clips", len(by_auto), by_auto[0])
    return records, bad.skipped
