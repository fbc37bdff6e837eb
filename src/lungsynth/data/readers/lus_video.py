"""Lung-ultrasound video files (gif mp4 mov mpeg mpg avi m4v) scored by a labels CSV (POCUS layout).

Layout: videos anywhere below ``<root>``, listed in ``<root>/labels.csv`` with
a path column (relative to the root; default ``path``) and a score column
(default ``lung_severity_score``). Every frame is decoded (GIF via Pillow,
others via PyAV) to uint8 ``(N, H, W, C)``, C 1 (gray) or 3 (RGB; alpha
dropped). One record per sampled frame, as for ``.mat`` clips
(:mod:`lungsynth.data.readers.lus_mat`): ``class`` = the score as text,
``unit`` = ``8bit``, ``slice`` = the frame index, no masks; ``patient`` is the
patient (``split_by="patient"``) or the video (``split_by="video"``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lungsynth.data.readers import common
from lungsynth.errors import InputDataError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES: frozenset[str] = frozenset({".gif", ".mp4", ".mov", ".mpeg", ".mpg", ".avi", ".m4v"})


def decode_video(path: Path) -> np.ndarray:
    """Decode every frame -> uint8 ``(N, H, W, C)`` (C 1 or 3); GIF via Pillow, others via PyAV."""
    return _decode_video_info(path)[0]


def _decode_video_info(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`decode_video` and the reading (see :class:`ScanRecords`)."""
    import imageio.v3 as iio

    common.check_clip_file(path)
    frames: list[np.ndarray] = []
    try:
        if path.suffix.lower() == ".gif":
            for frame in iio.imiter(path, plugin="pillow"):
                frames.append(np.asarray(frame))
        else:
            for frame in iio.imiter(path, plugin="pyav"):
                frames.append(np.asarray(frame))
    except Exception as exc:  # av.error.InvalidDataError, OSError, ValueError, ...
        raise InputDataError(path, f"cannot decode video ({type(exc).__name__}: {exc})", common.CLIP_CORRUPT_FIX) from exc
    if not frames:
        raise InputDataError(path, "video has no frames", common.CLIP_CORRUPT_FIX)
    decoded = sorted({1 if f.ndim == 2 else f.shape[-1] for f in frames})
    frames = uniform_channels(frames)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputDataError(path, f"video frames differ in size: {sorted(shapes)}", common.CLIP_CORRUPT_FIX)
    clip = common.clip_to_uint8(np.stack(frames), path)
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
) -> tuple[list[common.Record], list[common.Skipped]]:
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
    :func:`~lungsynth.data.readers.common.list_files` does (``follow_links_outside``).
    """
    root = Path(root)
    stride, cap, allowed = common.check_clip_options(frame_stride, max_frames, scores, split_by)
    pattern = common.compile_patient_regex(patient_regex or common.DEFAULT_PATIENT_REGEX)
    assert pattern is not None
    bad = common.BadFiles(root, on_bad_file)
    csv_path = root / labels_csv
    frame = common.read_table(csv_path, (path_column, score_column), "labels CSV")
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
        rows.append((path, common.parse_score(score_text, csv_path, rel)))
    listed = {p for p, _ in rows}
    unlisted = [p for p in common.list_files(root, VIDEO_SUFFIXES, follow_links_outside=follow_links_outside)
                if p not in listed]
    if unlisted and keep is None:
        logger.warning("%d video files are not in %s (ignored), e.g. %s", len(unlisted), labels_csv,
                       common.rel_path(root, unlisted[0]))
    records = common.ScanRecords()
    n_unscored = 0
    for path, score in rows:
        if score is None:
            n_unscored += 1
            logger.info("%s has no score in %s (ignored)", common.rel_path(root, path), labels_csv)
            continue
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            bad.report(InputDataError(path, f"unsupported video type {path.suffix!r}; expected one of "
                                      f"{sorted(VIDEO_SUFFIXES)}", "convert the video to mp4"))
            continue
        common.add_clip(records, bad, path, root=root, score=score, allowed=allowed, read=_decode_video_info,
                 fmt="lus_video", split_by=split_by, pattern=pattern, frame_stride=stride, max_frames=cap)
    if n_unscored:
        logger.warning("%d rows of %s have no %s (ignored)", n_unscored, labels_csv, score_column)
    if not records:
        raise InputDataError(csv_path, "no usable scored videos", f"list videos with a {score_column}")
    common.check_unique_ids(records, root)
    return records, bad.skipped
