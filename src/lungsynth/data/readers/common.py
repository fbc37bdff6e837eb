"""Helpers shared by the dataset readers: records, ids, bad files, file listing, PIL images, label maps, clips.

Every reader returns ``(records, skipped)``:

* ``records``: one dict per 2-D slice (or sampled ultrasound frame) with the
  manifest columns :data:`RECORD_COLUMNS` (all of :data:`MANIFEST_COLUMNS`
  except ``split``, which :func:`lungsynth.data.splits.assign_splits` fills),
  built by :func:`make_record`;
* ``skipped``: ``{"path", "problem"}`` dicts for the bad files left out when
  ``on_bad_file="skip"`` (paths relative to the dataset root, POSIX), plus
  ``"class"`` where the reader knows the class the file would have had
  (:class:`BadFiles`).

Also here: ids (:func:`sanitize_id`, :func:`pseudonymous_patient`,
:func:`check_unique_ids`), the folder walk and its symbolic-link policy
(:func:`list_files`), class folders, label maps (uint8 label indices,
:func:`labels_to_uint8`), 2-D images read with PIL (float32 ``(H, W, C)`` in
0..255, :func:`read_8bit`; label PNGs, :func:`read_label_image`) and what the
two lung-ultrasound readers share (scores CSVs, frame sampling, clips scaled to
uint8 ``(N, H, W, C)``, :class:`ScanRecords`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lungsynth.data.listing import is_within
from lungsynth.errors import ConfigError, InputDataError

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id", "patient", "class", "split", "format", "unit", "source", "slice", "mask", "lung_mask",
)
"""Manifest columns, in file order."""

RECORD_COLUMNS: tuple[str, ...] = tuple(c for c in MANIFEST_COLUMNS if c != "split")
"""Columns of the records the readers return (no ``split`` yet)."""

DEFAULT_MASK_LABELS: tuple[int, ...] = (0, 1, 2)
ON_BAD_FILE: tuple[str, ...] = ("error", "skip")

EMPTY_CLASS_FIX = "add images or remove the class from the config"
CORRUPT_FIX = "re-export or re-download the file, or set on_bad_file: skip to leave it out"

Record = dict[str, Any]
Skipped = dict[str, str]

_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._-]")


# --------------------------------------------------------------------------- records and ids


def sanitize_id(text: str) -> str:
    """Map ``text`` to a filesystem-safe id: ``[A-Za-z0-9._-]`` only, no leading ``.``/``-``."""
    out = _ID_BAD_CHARS.sub("_", text)
    if out[:1] in (".", "-"):
        out = "_" + out[1:]
    return out or "_"


def pseudonymous_patient(patient_id: str) -> str:
    """``"P"`` + the first 12 hex digits of SHA-256 of ``patient_id`` (UTF-8)."""
    return "P" + hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:12]


def make_record(*, id: str, patient: str, cls: str, fmt: str, unit: str, source: str, slice: int = 0,
                mask: str = "", lung_mask: str = "") -> Record:
    """One reader record: the :data:`RECORD_COLUMNS`, in that order."""
    return {"id": id, "patient": patient, "class": cls, "format": fmt, "unit": unit, "source": source,
            "slice": int(slice), "mask": mask, "lung_mask": lung_mask}


# --------------------------------------------------------------------------- bad files, listing


class BadFiles:
    """Raise bad-file errors (``"error"``) or collect them (``"skip"``)."""

    def __init__(self, root: Path, on_bad_file: str) -> None:
        if on_bad_file not in ON_BAD_FILE:
            raise ConfigError(f"on_bad_file must be one of {list(ON_BAD_FILE)}, got {on_bad_file!r}")
        self.root = root
        self.mode = on_bad_file
        self.skipped: list[Skipped] = []
        self.cls: str | None = None  # class of the files being scanned, recorded with each skipped file

    def report(self, err: InputDataError, also: str | None = None) -> None:
        """Raise ``err`` or record it; ``also`` names a paired file dropped with it."""
        if self.mode == "error":
            raise err
        problem = err.problem if also is None else f"{err.problem} (dropped together with {also})"
        # the report holds paths relative to the dataset root only, on one line
        problem = " ".join(problem.replace(f"{self.root.as_posix()}/", "").split())
        rel = rel_path(self.root, err.path)
        entry = {"path": rel, "problem": problem}
        if self.cls is not None:
            entry["class"] = self.cls
        self.skipped.append(entry)
        logger.warning("skipping %s: %s", rel, problem)


def rel_path(root: Path, path: str | Path) -> str:
    """``path`` relative to ``root`` as POSIX text (unchanged when outside ``root``)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def list_files(
    folder: Path,
    suffixes: Iterable[str] | None,
    *,
    root: str | Path | None = None,
    follow_links_outside: bool = False,
    recursive: bool = True,
    seen: dict[tuple[int, int], Path] | None = None,
) -> list[Path]:
    """Files below ``folder`` with one of ``suffixes`` (any case; ``None`` = every file), sorted by path.

    Hidden entries (names starting with ``.``) are ignored. Paths are returned
    under ``folder`` as given; only the checks use resolved paths, so a
    dataset ``root`` that is itself a symlink, or lies below one, works.

    Symbolic links (``root`` defaults to ``folder``; both are resolved first;
    ``folder`` itself is always listed, even when it is a link out of ``root``,
    since the config names it):

    * a link whose resolved target lies inside ``root`` is never followed,
      whether it points at a folder or a file: the target is part of the
      dataset and is read under its own path (if it lies in a scanned folder),
      never a second time under another name or another class. This is what
      makes a loop such as ``CT_COVID/loop -> ..`` harmless;
    * a link out of ``root`` is followed only with ``follow_links_outside``;
      every folder is then entered at most once (by resolved path), so link
      loops end;
    * a broken link with a wanted suffix is returned, so that the reader
      reports it as a bad file (a file that should be there and is not).

    Every link or folder left out is logged (warning) with the reason. One
    file reached under two paths (hard links, or two links out of the dataset
    to one file) is returned once, under the first path in sorted order
    (logged). ``seen`` (file identity ``(st_dev, st_ino)`` -> path), shared
    by the calls of one scan, makes a file already returned by an earlier
    call an :class:`InputDataError` naming both paths (one file in two
    classes). An unreadable folder is an :class:`InputDataError`.
    """
    wanted = None if suffixes is None else {s.lower() for s in suffixes}
    folder = Path(folder)
    base = Path(root) if root is not None else folder
    root_real = os.path.realpath(base)
    found: list[Path] = []
    left_out: dict[str, list[str]] = {}

    def leave_out(reason: str, path: Path, target: str) -> None:
        left_out.setdefault(reason, []).append(f"{rel_path(base, path)} -> {target}")

    def is_wanted(name: str) -> bool:
        return wanted is None or Path(name).suffix.lower() in wanted

    if not folder.is_dir():
        return []
    visited = {os.path.realpath(folder)}
    pending = [folder]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise InputDataError(directory, f"cannot list folder ({exc.strerror or exc})",
                                 "make the folder readable or remove it") from exc
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = directory / entry.name
            if entry.is_symlink():
                target = os.path.realpath(path)
                if os.path.isfile(target) and not is_wanted(entry.name):
                    continue  # a file link the reader would not read anyway
                if not os.path.exists(target):
                    if is_wanted(entry.name):
                        found.append(path)  # the reader reports the broken link
                    else:
                        leave_out("broken symbolic link(s)", path, os.readlink(path))
                elif is_within(target, root_real):
                    inner = rel_path(Path(root_real), target)
                    leave_out("symbolic link(s) into the dataset (never followed: their targets are read under "
                              "their own paths, not twice)", path, "the dataset root" if inner == "." else inner)
                elif not follow_links_outside:
                    leave_out("symbolic link(s) out of the dataset (set follow_links_outside: true to follow "
                              "them)", path, target)
                elif os.path.isdir(target):
                    if not recursive:
                        continue
                    if target in visited:
                        leave_out("symbolic link(s) to folders already listed (link loop)", path, target)
                    else:
                        visited.add(target)
                        subfolders.append(path)
                else:
                    found.append(path)
            elif entry.is_dir(follow_symlinks=False):
                if recursive:
                    real = os.path.realpath(path)
                    if real not in visited:
                        visited.add(real)
                        subfolders.append(path)
            elif is_wanted(entry.name):
                found.append(path)
        pending.extend(reversed(subfolders))
    for reason, examples in left_out.items():
        logger.warning("%s: left out %d %s, e.g. %s", rel_path(base, folder) if folder != base else folder,
                       len(examples), reason, "; ".join(examples[:3]))
    found.sort(key=lambda p: p.as_posix())
    unique: list[Path] = []
    mine: dict[tuple[int, int], Path] = {}
    for path in found:
        try:
            st = path.stat()
        except OSError:  # broken link or vanished file: the reader reports it
            unique.append(path)
            continue
        key = (st.st_dev, st.st_ino)
        if seen is not None and key in seen and key not in mine:
            raise InputDataError(
                path, f"is the same file as {rel_path(base, seen[key])} (a hard or symbolic link, or overlapping "
                "folders), which an earlier class already holds; one file cannot be in two classes",
                "remove the link or the copy, or fix the class folders in the config",
            )
        if key in mine:
            logger.warning("%s is the same file as %s (hard or symbolic link): read once, as the latter",
                           rel_path(base, path), rel_path(base, mine[key]))
            continue
        mine[key] = path
        unique.append(path)
    if seen is not None:
        seen.update(mine)
    return unique


def check_file(path: Path) -> None:
    """Raise :class:`InputDataError` for a missing file, a broken link or an empty (0-byte) file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise InputDataError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)",
                                 "fix or remove the link") from exc
        raise InputDataError(path, "file not found", "restore the file or re-run the ingest step") from exc
    except OSError as exc:
        raise InputDataError(path, f"cannot read file ({exc.strerror or exc})", "make the file readable") from exc
    if size == 0:
        raise InputDataError(path, "file is empty (0 bytes)", CORRUPT_FIX)


# --------------------------------------------------------------------------- options, class folders, ids, label maps


def compile_patient_regex(patient_regex: str | None) -> re.Pattern[str] | None:
    if patient_regex is None:
        return None
    try:
        pattern = re.compile(patient_regex)
    except re.error as exc:
        raise ConfigError(f"patient_regex {patient_regex!r} is not a valid regex: {exc}") from exc
    if "patient" not in pattern.groupindex:
        raise ConfigError(f"patient_regex {patient_regex!r} needs a named group (?P<patient>...)")
    return pattern


def check_classes(classes: Any) -> dict[str, str]:
    if not isinstance(classes, Mapping) or not classes:
        raise ConfigError(f"classes must be a non-empty mapping class name -> subfolder, got {classes!r}")
    for name, sub in classes.items():
        if not isinstance(name, str) or not name or not isinstance(sub, str) or not sub:
            raise ConfigError(f"classes: class {name!r} -> {sub!r}: both must be non-empty strings")
    return dict(classes)


def empty_class(cls: str, folder: Path, detail: str) -> InputDataError:
    return InputDataError(folder, f"class {cls!r} {detail}", EMPTY_CLASS_FIX)


def class_folder(root: Path, cls: str, sub: str) -> Path:
    folder = root / sub
    if not folder.is_dir():
        raise empty_class(cls, folder, "has no folder (missing)")
    return folder


def check_unique_ids(records: Sequence[Mapping[str, Any]], root: str | Path = "") -> None:
    """Raise :class:`InputDataError` naming both files when two records share an ``id``."""
    seen: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        other = seen.get(rec["id"])
        if other is not None:
            first, second = other["source"], rec["source"]
            raise InputDataError(
                Path(root) / second,
                f"duplicate slice id {rec['id']!r}: produced by both {first} and {second}",
                "rename one of the files (ids come from file names with unsafe characters replaced by '_')",
            )
        seen[rec["id"]] = rec


def check_mask_labels(mask_labels: Iterable[int] | None) -> frozenset[int]:
    labels = DEFAULT_MASK_LABELS if mask_labels is None else tuple(mask_labels)
    if not labels or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 255
                         for v in labels):
        raise ConfigError(f"mask_labels must be a non-empty list of integers 0..255, got {mask_labels!r}")
    return frozenset(int(v) for v in labels)


def labels_to_uint8(arr: np.ndarray, path: Path, allowed: frozenset[int] | None) -> np.ndarray:
    """Validate a label map (integer values, within ``allowed``) and return it as uint8.

    ``allowed=None`` (lung masks) accepts any integer 0..255.
    """
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or np.any(arr != np.round(arr)):
            raise InputDataError(path, "mask holds non-integer values; expected label indices",
                                 "save the mask as integer label indices")
    elif arr.dtype.kind not in "uib":
        raise InputDataError(path, f"mask has unsupported data type {arr.dtype}", "save the mask as uint8 labels")
    values = np.unique(arr)
    found = [int(v) for v in values]
    if allowed is None:
        if found and (found[0] < 0 or found[-1] > 255):
            raise InputDataError(path, f"mask values {found[:10]} are outside 0..255",
                                 "save the lung mask as 0 = background, 1 (or any value 1..255) = lung")
    else:
        unknown = [v for v in found if v not in allowed]
        if unknown:
            raise InputDataError(
                path,
                f"mask has unknown label values {unknown} (values found: {found}; allowed mask_labels: "
                f"{sorted(allowed)})",
                "remap the mask to label indices (0 background, 1 ground-glass, 2 consolidation) "
                "or set mask_labels in the config",
            )
    return arr.astype(np.uint8)


# --------------------------------------------------------------------------- 2-D images (PIL)


def open_pil(path: Path):
    """Open and fully decode an image with PIL; raise InputDataError when it cannot."""
    from PIL import Image

    check_file(path)
    im = None
    try:
        im = Image.open(path)
        if getattr(im, "n_frames", 1) > 1:
            raise InputDataError(path, f"image has {im.n_frames} frames/pages; expected one 2-D image",
                                 "save each page as its own file")
        im.load()  # decodes everything; PIL then closes the file of a single-frame image
        return im
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        if im is not None:
            im.close()
        if isinstance(exc, InputDataError):
            raise
        raise InputDataError(path, f"cannot decode image ({type(exc).__name__}: {exc})", CORRUPT_FIX) from exc


def pil_to_float(im, path: Path) -> np.ndarray:
    """PIL image -> float32 ``(H, W, C)`` in 0..255 (see :func:`load_image`)."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.float32)[..., None]
    if mode.startswith("I;16") or mode == "I":  # 16-bit grayscale: 0..65535 -> 0..255
        arr = np.asarray(im).astype(np.float32) / 257.0
        return np.clip(arr, 0.0, 255.0)[..., None]
    if mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 255.0)[..., None]
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.float32)[..., None]
    if mode == "RGB":
        return np.asarray(im, dtype=np.float32)
    try:  # RGBA, LA, P, PA, CMYK, YCbCr, ... (alpha is dropped, not composited)
        return np.asarray(im.convert("RGB"), dtype=np.float32)
    except (ValueError, OSError) as exc:
        raise InputDataError(path, f"unsupported image mode {mode!r}", "save the image as 8-bit gray or RGB") from exc


def read_8bit(path: Path) -> np.ndarray:
    return pil_to_float(open_pil(path), path)


def read_label_image(path: Path, allowed: frozenset[int]) -> np.ndarray:
    """Read a palette/grayscale label PNG -> validated uint8 ``(H, W)``."""
    im = open_pil(path)
    mode = im.mode
    if mode in ("P", "L", "1", "I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
    elif mode in ("PA", "LA"):
        arr = np.asarray(im)[..., 0]
    elif mode in ("RGB", "RGBA"):
        rgb = np.asarray(im)[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise InputDataError(path, "mask is a colour image; expected palette or grayscale label indices",
                                 "save the mask as a palette (P) or grayscale (L) PNG of label indices")
        arr = rgb[..., 0]
    else:
        raise InputDataError(path, f"unsupported mask mode {mode!r}", "save the mask as a palette or grayscale PNG")
    return labels_to_uint8(np.ascontiguousarray(arr), path, allowed)


# --------------------------------------------------------------------------- lung-ultrasound clips (lus_mat, lus_video)


DEFAULT_PATIENT_REGEX = r"^(?P<patient>patient\d+)"
"""Default ``patient_regex`` of the lung-ultrasound readers (``patient01_...`` -> ``patient01``)."""
SPLIT_BY: tuple[str, ...] = ("patient", "video")
CLIP_CORRUPT_FIX = "re-export the file, or set on_bad_file: skip to leave it out"
_EMPTY_FIX = "re-export or re-copy the file, or set on_bad_file: skip to leave it out"


def sample_frames(n_frames: int, frame_stride: int = 1, max_frames: int | None = None) -> list[int]:
    """Frame indices ``0, s, 2s, ...`` below ``n_frames``; capped to ``max_frames`` picked evenly (first kept)."""
    idx = list(range(0, n_frames, frame_stride))
    if max_frames is not None and len(idx) > max_frames:
        picks = np.unique(np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int))
        idx = [idx[i] for i in picks]
    return idx


def check_clip_options(frame_stride: Any, max_frames: Any, scores: Any,
                       split_by: Any) -> tuple[int, int | None, set[int]]:
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


def parse_score(text: str, csv_path: Path, name: str) -> int | None:
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


def read_table(path: Path, columns: Sequence[str], what: str):
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


def clip_patient(stem: str, split_by: str, pattern: re.Pattern[str]) -> str:
    if split_by == "video":
        return stem
    match = pattern.search(stem)
    if match is not None and match.group("patient"):
        return match.group("patient")
    return stem


def frame_records(path: Path, root: Path, n_frames: int, score: int, fmt: str, patient: str,
                  frame_stride: int, max_frames: int | None) -> list[Record]:
    stem = sanitize_id(path.stem)
    return [make_record(id=f"{stem}_f{k:04d}", patient=patient, cls=str(score), fmt=fmt, unit="8bit",
                        source=rel_path(root, path), slice=k)
            for k in sample_frames(n_frames, frame_stride, max_frames)]


def clip_to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale a clip to uint8.

    uint8 as is; bool to 0/255; other integers 0..255 as is, up to 65535
    scaled by 1/257 (negative or wider: error); float in [0, 1] scaled by 255,
    in [0, 255] as is (NaN, infinite or outside [0, 255]: error).
    """
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


class ScanRecords(list):
    """The records of a scan (a plain list of records) plus ``readings``: how each file was read.

    ``readings[source]`` (source as in the records) is a dict with ``format``,
    ``frames`` (frames in the file), ``how_read`` (short text, the same for
    files read the same way; no file names or identifiers), ``variable`` and
    ``layout`` (``.mat`` only: the array and the layout it was read in, which
    :func:`lungsynth.data.readers.load_frame` takes back) and ``resolved_by`` (``"auto rule"`` where
    an ambiguous ``H x W x 3`` array was read as one RGB frame, ``"mat_layout"``
    where the setting decided, else ``""``). Kept off the records so that they
    hold exactly the manifest columns.
    """

    def __init__(self, records: Iterable[Record] = (), readings: Mapping[str, dict[str, Any]] | None = None):
        super().__init__(records)
        self.readings: dict[str, dict[str, Any]] = dict(readings or {})


def check_clip_file(path: Path) -> None:
    """InputDataError for a missing or zero-byte file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputDataError(path, f"cannot read file ({exc})", "check the file and its permissions") from exc
    if size == 0:
        raise InputDataError(path, "file is empty (0 bytes)", _EMPTY_FIX)


def add_clip(records: ScanRecords, bad: BadFiles, path: Path, *, root: Path, score: int, allowed: set[int],
             read: Callable[[Path], tuple[np.ndarray, dict[str, Any]]], fmt: str, split_by: str,
             pattern: re.Pattern[str], frame_stride: int, max_frames: int | None) -> None:
    """Read one scored clip with ``read`` and add its sampled frames and its reading to ``records``.

    A score outside ``allowed`` or a clip that ``read`` rejects is a bad file
    (``bad.report``: raised or skipped).
    """
    try:
        if score not in allowed:
            raise InputDataError(path, f"score {score} is not one of the configured scores {sorted(allowed)}",
                                 "fix the score in the CSV or add it to the dataset's scores")
        clip, reading = read(path)
    except InputDataError as err:
        bad.report(err)
        return
    records.extend(frame_records(path, root, clip.shape[0], score, fmt, clip_patient(path.stem, split_by, pattern),
                                 frame_stride, max_frames))
    records.readings[rel_path(root, path)] = reading
