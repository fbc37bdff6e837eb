"""Dataset readers: scan a dataset folder into manifest records, reload one slice.

Every reader walks its layout, fully decodes and validates every file (pixel
data is read and then dropped, so scanning holds one file or volume at a time)
and returns ``(records, skipped)``:

* ``records``: one dict per 2-D slice with the manifest columns
  :data:`RECORD_COLUMNS` (all of :data:`MANIFEST_COLUMNS` except ``split``,
  which :func:`lungsynth.data.splits.assign_splits` fills);
* ``skipped``: ``{"path", "problem"}`` dicts for the bad files left out when
  ``on_bad_file="skip"`` (paths relative to the dataset root, POSIX), plus
  ``"class"`` where the reader knows the class the file would have had (so
  that a split made impossible by skipping can say so).

With ``on_bad_file="error"`` the first bad file raises
:class:`~lungsynth.errors.InputDataError` naming it. Some problems are never
skipped: an empty or missing class, duplicate slice ids, a case missing from a
labels CSV.

:func:`load_image` and :func:`load_mask` reload the pixels of one manifest row
later (preprocess stage).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from lungsynth.data.listing import is_within
from lungsynth.errors import ConfigError, InputDataError
from lungsynth.data.volumes import AFFINE_LINEAR_TOL, AFFINE_TRANSLATION_TOL_MM, grid_mismatch, nifti_to_stack_and_affine

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id", "patient", "class", "split", "format", "unit", "source", "slice", "mask", "lung_mask",
)
"""Manifest columns, in file order."""

RECORD_COLUMNS: tuple[str, ...] = tuple(c for c in MANIFEST_COLUMNS if c != "split")
"""Columns of the records the readers return (no ``split`` yet)."""

FORMATS: tuple[str, ...] = ("image_folder", "dicom", "nifti", "paired_folder", "lus_mat", "lus_video")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm"})
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
DEFAULT_MASK_LABELS: tuple[int, ...] = (0, 1, 2)
ON_BAD_FILE: tuple[str, ...] = ("error", "skip")

EMPTY_CLASS_FIX = "add images or remove the class from the config"
_CORRUPT_FIX = "re-export or re-download the file, or set on_bad_file: skip to leave it out"

Record = dict[str, Any]
Skipped = dict[str, str]

_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._-]")


# --------------------------------------------------------------------------- helpers


def sanitize_id(text: str) -> str:
    """Map ``text`` to a filesystem-safe id: ``[A-Za-z0-9._-]`` only, no leading ``.``/``-``."""
    out = _ID_BAD_CHARS.sub("_", text)
    if out[:1] in (".", "-"):
        out = "_" + out[1:]
    return out or "_"


def pseudonymous_patient(patient_id: str) -> str:
    """``"P"`` + the first 12 hex digits of SHA-256 of ``patient_id`` (UTF-8)."""
    return "P" + hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:12]


class _BadFiles:
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
        rel = _rel(self.root, err.path)
        entry = {"path": rel, "problem": problem}
        if self.cls is not None:
            entry["class"] = self.cls
        self.skipped.append(entry)
        logger.warning("skipping %s: %s", rel, problem)


def _rel(root: Path, path: str | Path) -> str:
    """``path`` relative to ``root`` as POSIX text (unchanged when outside ``root``)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _list_files(
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
        left_out.setdefault(reason, []).append(f"{_rel(base, path)} -> {target}")

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
                    inner = _rel(Path(root_real), target)
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
        logger.warning("%s: left out %d %s, e.g. %s", _rel(base, folder) if folder != base else folder,
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
                path, f"is the same file as {_rel(base, seen[key])} (a hard or symbolic link, or overlapping "
                "folders), which an earlier class already holds; one file cannot be in two classes",
                "remove the link or the copy, or fix the class folders in the config",
            )
        if key in mine:
            logger.warning("%s is the same file as %s (hard or symbolic link): read once, as the latter",
                           _rel(base, path), _rel(base, mine[key]))
            continue
        mine[key] = path
        unique.append(path)
    if seen is not None:
        seen.update(mine)
    return unique


def _check_file(path: Path) -> None:
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
        raise InputDataError(path, "file is empty (0 bytes)", _CORRUPT_FIX)


def _strip_suffix(rel: PurePosixPath | Path) -> str:
    """POSIX path without its image suffix (``a/b.png`` -> ``a/b``)."""
    return rel.with_suffix("").as_posix()


def _compile_patient_regex(patient_regex: str | None) -> re.Pattern[str] | None:
    if patient_regex is None:
        return None
    try:
        pattern = re.compile(patient_regex)
    except re.error as exc:
        raise ConfigError(f"patient_regex {patient_regex!r} is not a valid regex: {exc}") from exc
    if "patient" not in pattern.groupindex:
        raise ConfigError(f"patient_regex {patient_regex!r} needs a named group (?P<patient>...)")
    return pattern


def _patient_of(stem: str, own: str, pattern: re.Pattern[str] | None) -> str:
    """Patient of a 2-D image: the regex group searched in ``stem``, else ``own``."""
    if pattern is not None:
        match = pattern.search(stem)
        if match is not None and match.group("patient"):
            return match.group("patient")
    return own


def _check_classes(classes: Any) -> dict[str, str]:
    if not isinstance(classes, Mapping) or not classes:
        raise ConfigError(f"classes must be a non-empty mapping class name -> subfolder, got {classes!r}")
    for name, sub in classes.items():
        if not isinstance(name, str) or not name or not isinstance(sub, str) or not sub:
            raise ConfigError(f"classes: class {name!r} -> {sub!r}: both must be non-empty strings")
    return dict(classes)


def _empty_class(cls: str, folder: Path, detail: str) -> InputDataError:
    return InputDataError(folder, f"class {cls!r} {detail}", EMPTY_CLASS_FIX)


def _class_folder(root: Path, cls: str, sub: str) -> Path:
    folder = root / sub
    if not folder.is_dir():
        raise _empty_class(cls, folder, "has no folder (missing)")
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


def _check_mask_labels(mask_labels: Iterable[int] | None) -> frozenset[int]:
    labels = DEFAULT_MASK_LABELS if mask_labels is None else tuple(mask_labels)
    if not labels or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 255
                         for v in labels):
        raise ConfigError(f"mask_labels must be a non-empty list of integers 0..255, got {mask_labels!r}")
    return frozenset(int(v) for v in labels)


def _labels_to_uint8(arr: np.ndarray, path: Path, allowed: frozenset[int] | None) -> np.ndarray:
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


def _open_pil(path: Path):
    """Open and fully decode an image with PIL; raise InputDataError when it cannot."""
    from PIL import Image

    _check_file(path)
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
        raise InputDataError(path, f"cannot decode image ({type(exc).__name__}: {exc})", _CORRUPT_FIX) from exc


def _pil_to_float(im, path: Path) -> np.ndarray:
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


def _read_8bit(path: Path) -> np.ndarray:
    return _pil_to_float(_open_pil(path), path)


def _read_label_image(path: Path, allowed: frozenset[int]) -> np.ndarray:
    """Read a palette/grayscale label PNG -> validated uint8 ``(H, W)``."""
    im = _open_pil(path)
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
    return _labels_to_uint8(np.ascontiguousarray(arr), path, allowed)


def scan_image_folder(
    root: str | Path,
    classes: Mapping[str, str],
    *,
    patient_regex: str | None = None,
    on_bad_file: str = "error",
    follow_links_outside: bool = False,
) -> tuple[list[Record], list[Skipped]]:
    """Scan class subfolders of 2-D images (COVID-CT layout).

    ``classes`` maps class name -> subfolder of ``root``; images (.png .jpg .jpeg
    .bmp .tif .tiff, any case) are found recursively. ``id`` is the path within
    the class folder without suffix, sanitised; ``patient`` is the
    ``patient_regex`` group ``patient`` searched in the file stem, else the
    file's own path within the class folder without suffix (its stem for flat
    folders). Unit ``8bit``, slice 0, no masks. Symbolic links as in
    :func:`_list_files` (links into the dataset are not followed, links out
    of it only with ``follow_links_outside``; a file in two classes is an error).
    """
    root = Path(root)
    classes = _check_classes(classes)
    pattern = _compile_patient_regex(patient_regex)
    bad = _BadFiles(root, on_bad_file)
    records: list[Record] = []
    seen: dict[tuple[int, int], Path] = {}
    for cls, sub in classes.items():
        folder = _class_folder(root, cls, sub)
        bad.cls = cls
        files = _list_files(folder, IMAGE_SUFFIXES, root=root, follow_links_outside=follow_links_outside, seen=seen)
        if not files:
            raise _empty_class(cls, folder, f"has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        n_before = len(records)
        for path in files:
            try:
                _read_8bit(path)
            except InputDataError as err:
                bad.report(err)
                continue
            inner = _strip_suffix(path.relative_to(folder))
            records.append(_record(
                id=sanitize_id(inner), patient=_patient_of(path.stem, inner, pattern), cls=cls,
                fmt="image_folder", unit="8bit", source=_rel(root, path),
            ))
        if len(records) == n_before:
            raise _empty_class(cls, folder, f"has no readable image files (all {len(files)} were bad)")
    check_unique_ids(records, root)
    return records, bad.skipped


def scan_paired_folder(
    root: str | Path,
    *,
    images: str = "Imgs",
    masks: str = "GT",
    default_class: str = "covid",
    patient_regex: str | None = None,
    mask_labels: Iterable[int] | None = DEFAULT_MASK_LABELS,
    on_bad_file: str = "error",
    follow_links_outside: bool = False,
) -> tuple[list[Record], list[Skipped]]:
    """Scan images with same-stem label masks (COVID-SemiSeg layout ``Imgs/`` + ``GT/``).

    Every image needs a mask with the same path stem (any image suffix) in
    ``masks``; masks are palette/grayscale images whose values are label indices
    in ``mask_labels`` and whose size equals the image's. All slices get
    ``default_class``; ``id`` and ``patient`` as in :func:`scan_image_folder`.
    Masks without an image are ignored (logged). Symbolic links as in
    :func:`_list_files`.
    """
    root = Path(root)
    pattern = _compile_patient_regex(patient_regex)
    allowed = _check_mask_labels(mask_labels)
    if not isinstance(default_class, str) or not default_class:
        raise ConfigError(f"default_class must be a non-empty class name, got {default_class!r}")
    bad = _BadFiles(root, on_bad_file)
    bad.cls = default_class
    links = {"root": root, "follow_links_outside": follow_links_outside}
    image_dir = _class_folder(root, default_class, images)
    mask_dir = root / masks
    if not mask_dir.is_dir():
        raise InputDataError(mask_dir, "mask folder is missing", f"add the masks or set paired.masks (now {masks!r})")
    mask_index: dict[str, list[Path]] = {}
    for path in _list_files(mask_dir, IMAGE_SUFFIXES, **links):
        mask_index.setdefault(_strip_suffix(path.relative_to(mask_dir)), []).append(path)
    files = _list_files(image_dir, IMAGE_SUFFIXES, **links)
    if not files:
        raise _empty_class(default_class, image_dir, "has no image files")
    records: list[Record] = []
    used: set[str] = set()
    for path in files:
        inner = _strip_suffix(path.relative_to(image_dir))
        used.add(inner)
        candidates = mask_index.get(inner, [])
        if len(candidates) != 1:
            problem = (f"no mask with the same name in {masks}/" if not candidates else
                       f"several masks match: {', '.join(_rel(root, c) for c in candidates)}")
            bad.report(InputDataError(path, problem, "add exactly one mask per image (same file stem)"))
            continue
        mask_path = candidates[0]
        try:
            image = _read_8bit(path)
        except InputDataError as err:
            bad.report(err, also=_rel(root, mask_path))
            continue
        try:
            mask = _read_label_image(mask_path, allowed)
            if mask.shape != image.shape[:2]:
                raise InputDataError(
                    mask_path,
                    f"mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image {_rel(root, path)} "
                    f"size {image.shape[1]}x{image.shape[0]}",
                    "resample the mask to the image grid (nearest neighbour) or fix the pairing",
                )
        except InputDataError as err:
            bad.report(err, also=_rel(root, path))
            continue
        records.append(_record(
            id=sanitize_id(inner), patient=_patient_of(path.stem, inner, pattern), cls=default_class,
            fmt="paired_folder", unit="8bit", source=_rel(root, path), mask=_rel(root, mask_path),
        ))
    orphans = sorted(set(mask_index) - used)
    if orphans:
        logger.warning("%d masks in %s have no image (ignored), e.g. %s", len(orphans), mask_dir, orphans[0])
    if not records:
        raise _empty_class(default_class, image_dir, f"has no readable image/mask pairs (all {len(files)} were bad)")
    check_unique_ids(records, root)
    return records, bad.skipped


# --------------------------------------------------------------------------- DICOM


def _has_dicm_marker(path: Path) -> bool:
    """Whether bytes 128..131 of ``path`` are ``DICM`` (the DICOM file preamble is 128 bytes)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _sop_class_name(ds: Any) -> str:
    """Name of the dataset's SOP class (from the dataset, else its file meta); '' when unknown."""
    uid = ds.get("SOPClassUID", None) or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    if not uid:
        return ""
    try:
        return str(uid.name)
    except AttributeError:
        return str(uid)


def _transfer_syntax(ds: Any) -> tuple[str, bool | None]:
    """``(name, compressed)`` of a dataset's transfer syntax; ``compressed`` is None when unknown."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "Implicit VR Little Endian (no file meta)", False
    try:
        return f"{uid.name} ({uid})", bool(uid.is_compressed)
    except (AttributeError, ValueError):  # private or unknown UID
        return str(uid), None


def _short_pixel_data(ds: Any) -> str | None:
    """For uncompressed pixel data: what is wrong when it is shorter than the header's rows x columns x bits."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        got = len(ds.PixelData)
    except (AttributeError, TypeError, ValueError):
        return None
    n_values = rows * cols * samples * frames
    if bits == 1:
        expected = (n_values + 7) // 8
    elif bits > 0 and bits % 8 == 0:
        expected = n_values * bits // 8
    else:
        return None
    if got >= expected:
        return None
    return (f"DICOM file is truncated: its pixel data has {got} bytes, but {rows} rows x {cols} columns x "
            f"{bits} bits need {expected} bytes")


def _read_dicom(path: Path) -> tuple[Any, np.ndarray]:
    """Parse one single-frame grayscale DICOM -> ``(dataset, HU float32 (H, W))``."""
    import pydicom

    _check_file(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # InvalidDicomError, EOFError, OSError, struct/value errors on truncation
        raise InputDataError(path, f"cannot parse DICOM ({type(exc).__name__}: {exc})", _CORRUPT_FIX) from exc
    if "PixelData" not in ds:
        sop = _sop_class_name(ds)
        if len(ds) == 0:  # pydicom stops quietly at the end of a cut-off file
            raise InputDataError(path, f"DICOM file is truncated: it ends within its header ({path.stat().st_size} "
                                 "bytes, no data elements after the file meta information)", _CORRUPT_FIX)
        if "Image Storage" in sop or ("Rows" in ds and "Columns" in ds):  # an image whose pixel data was cut off
            raise InputDataError(path, f"DICOM file is truncated: it is an image ({sop or 'Rows, Columns'}) but "
                                 f"ends before its pixel data ({path.stat().st_size} bytes)", _CORRUPT_FIX)
        raise InputDataError(path, f"DICOM file has no pixel data (not an image{': ' + sop if sop else ''})",
                             "re-export the file or remove non-image files from the series folder")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InputDataError(path, f"multi-frame DICOM ({frames} frames) is not supported",
                             "export the series as one single-frame file per slice")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise InputDataError(path, "DICOM is not grayscale (SamplesPerPixel != 1)", "use CT images")
    syntax, compressed = _transfer_syntax(ds)
    if compressed is False:
        short = _short_pixel_data(ds)
        if short is not None:
            raise InputDataError(path, short, _CORRUPT_FIX)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # damaged data, unsupported transfer syntax without a decoder, ...
        problem = f"cannot decode DICOM pixel data ({type(exc).__name__}: {exc}); transfer syntax {syntax}"
        fix = _CORRUPT_FIX
        if compressed:
            problem += " is compressed"
            fix = ("install a decoder for it (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or "
                   "python-gdcm), or re-export the series uncompressed; if a decoder is installed, " + _CORRUPT_FIX)
        raise InputDataError(path, problem, fix) from exc
    if pixels.ndim != 2:
        raise InputDataError(path, f"DICOM pixel data has shape {pixels.shape}; expected 2-D", "use CT slices")
    slope = ds.get("RescaleSlope", None)
    intercept = ds.get("RescaleIntercept", None)
    slope = 1.0 if slope is None or slope == "" else float(slope)
    intercept = 0.0 if intercept is None or intercept == "" else float(intercept)
    return ds, pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _dicom_sort_keys(infos: list[dict[str, Any]]) -> tuple[list[Any], str]:
    """Sort keys of a series' slices: position along the normal, else InstanceNumber, else path."""
    if all(i["ipp"] is not None and i["iop"] is not None for i in infos):
        keys = []
        for i in infos:
            iop = np.asarray(i["iop"], dtype=float)
            normal = np.cross(iop[:3], iop[3:])
            if normal[np.argmax(np.abs(normal))] < 0:  # rank 0 = inferior (axial), as in NIfTI stacks
                normal = -normal
            keys.append((float(np.dot(normal, np.asarray(i["ipp"], dtype=float))), i["path"].as_posix()))
        return keys, "position"
    if all(i["instance"] is not None for i in infos):
        return [(i["instance"], i["path"].as_posix()) for i in infos], "InstanceNumber"
    return [(0, i["path"].as_posix()) for i in infos], "file name"


def _tag_list(ds: Any, keyword: str, length: int) -> list[float] | None:
    value = ds.get(keyword, None)
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == length else None


def scan_dicom(
    root: str | Path,
    classes: Mapping[str, str],
    *,
    on_bad_file: str = "error",
    follow_links_outside: bool = False,
) -> tuple[list[Record], list[Skipped]]:
    """Scan class subfolders of DICOM CT series (recursive).

    A DICOM file is recognised by its content, whatever its name (PACS exports
    use ``IM0000`` or UID names without a suffix): every non-hidden file whose
    bytes 128..131 are ``DICM`` (after the 128-byte preamble), and every file
    named ``*.dcm`` (any case) even without the marker (it is then parsed and,
    if it is not DICOM, reported as a bad file). Other files (and ``DICOMDIR``
    index files) are ignored and counted in the log; a broken symbolic link is
    a bad file. Symbolic links as in :func:`_list_files`.

    Files are grouped into series by SeriesInstanceUID (else by folder) and
    ranked along the slice normal from ImageOrientationPatient /
    ImagePositionPatient (fallback InstanceNumber, then file name); ``slice``
    is that rank and ``source`` the slice's own file. The normal is signed so
    that its dominant patient axis points up (rank 0 = most inferior slice of
    an axial series, as in NIfTI stacks). Pixels are kept as stored (no
    reorientation by ImageOrientationPatient).
    ``patient`` = :func:`pseudonymous_patient` of PatientID (else PatientName,
    StudyInstanceUID); ``id`` = ``<patient>_<8 hex of series UID>_s<rank:03d>``.
    Every file's pixel data is decoded (HU = stored * RescaleSlope +
    RescaleIntercept) and slice sizes must agree within a series (in skip mode
    the files off the most common size are skipped).
    """
    root = Path(root)
    classes = _check_classes(classes)
    bad = _BadFiles(root, on_bad_file)
    records: list[Record] = []
    identifying_paths = 0
    seen: dict[tuple[int, int], Path] = {}
    for cls, sub in classes.items():
        folder = _class_folder(root, cls, sub)
        bad.cls = cls
        listed = _list_files(folder, None, root=root, follow_links_outside=follow_links_outside, seen=seen)
        files = _dicom_files(listed, root, folder)
        if not listed:
            raise _empty_class(cls, folder, "has no DICOM files (the folder holds no files)")
        if not files:
            examples = ", ".join(_rel(root, p) for p in listed[:3])
            raise InputDataError(
                folder,
                f"class {cls!r} has {len(listed)} files, none is DICOM (no 'DICM' marker after the 128-byte "
                f"preamble, no .dcm suffix), e.g. {examples}",
                "put the class's DICOM series in this folder (files named *.dcm are always tried), point the "
                "class at the right folder, or remove the class from the config",
            )
        series: dict[str, list[dict[str, Any]]] = {}
        for path in files:
            try:
                ds, hu = _read_dicom(path)
            except InputDataError as err:
                bad.report(err)
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
            key = uid or f"folder:{_rel(root, path.parent)}"
            identity = next((str(ds.get(k, "") or "").strip() for k in ("PatientID", "PatientName",
                             "StudyInstanceUID") if str(ds.get(k, "") or "").strip()), key)
            instance = ds.get("InstanceNumber", None)
            series.setdefault(key, []).append({
                "path": path, "shape": hu.shape, "identity": identity,
                "names": [str(ds.get(k, "") or "").strip() for k in ("PatientID", "PatientName")],
                "ipp": _tag_list(ds, "ImagePositionPatient", 3),
                "iop": _tag_list(ds, "ImageOrientationPatient", 6),
                "instance": None if instance in (None, "") else int(instance),
            })
            del ds, hu
        n_before = len(records)
        for key in sorted(series, key=lambda k: series[k][0]["path"].as_posix()):
            infos = _consistent_series(series[key], root, bad)
            keys, method = _dicom_sort_keys(infos)
            if method != "position":
                logger.warning("series %s: no usable ImagePositionPatient/ImageOrientationPatient; sorted by %s",
                               _rel(root, infos[0]["path"].parent), method)
            if method == "position" and len({round(k[0], 3) for k in keys}) < len(keys):
                logger.warning("series %s: several slices share a position (two series under one UID?)",
                               _rel(root, infos[0]["path"].parent))
            ordered = [info for _, info in sorted(zip(keys, infos), key=lambda t: t[0])]
            patient = pseudonymous_patient(infos[0]["identity"])
            if any(_path_names_identity(_rel(root, infos[0]["path"]), name) for name in infos[0]["names"]):
                identifying_paths += 1
            series_tag = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
            for rank, info in enumerate(ordered):
                records.append(_record(
                    id=f"{patient}_{series_tag}_s{rank:03d}", patient=patient, cls=cls, fmt="dicom", unit="HU",
                    source=_rel(root, info["path"]), slice=rank,
                ))
        if len(records) == n_before:
            raise _empty_class(cls, folder, f"has no readable DICOM files (all {len(files)} were bad)")
    if identifying_paths:
        # the identifier itself is not logged: logs are artifacts too
        logger.warning("%d DICOM series lie in folders or files named with their PatientID or PatientName; "
                       "the manifest's 'source' column records these paths relative to %s. Rename them "
                       "(e.g. to pseudonyms) before sharing results/", identifying_paths, root)
    check_unique_ids(records, root)
    return records, bad.skipped


def _dicom_files(listed: list[Path], root: Path, folder: Path) -> list[Path]:
    """The DICOM candidates of a class folder's files (see :func:`scan_dicom`); logs what it ignores."""
    files: list[Path] = []
    ignored: list[Path] = []
    for path in listed:
        if path.name.upper() == "DICOMDIR":
            logger.info("%s: DICOMDIR index file ignored (the series files are read directly)", _rel(root, path))
        elif path.suffix.lower() in DICOM_SUFFIXES or _has_dicm_marker(path) or not path.exists():
            files.append(path)  # a broken link is reported by _read_dicom
        else:
            ignored.append(path)
    if ignored:
        empty = sum(1 for p in ignored if p.stat().st_size == 0)
        logger.warning("%s: ignored %d files that are not DICOM (no 'DICM' marker after the 128-byte preamble, "
                       "no .dcm suffix)%s, e.g. %s", _rel(root, folder), len(ignored),
                       f", {empty} of them empty (0 bytes)" if empty else "",
                       ", ".join(_rel(root, p) for p in ignored[:3]))
    return files


def _path_names_identity(relative_path: str, identity: str) -> bool:
    """Whether a file path relative to the dataset root contains the patient identifier (3+ characters)."""
    if len(identity) < 3:
        return False
    path = relative_path.lower()
    forms = {identity.lower(), identity.lower().replace("^", " "), identity.lower().replace("^", "_")}
    return any(form in path for form in forms)


def _consistent_series(infos: list[dict[str, Any]], root: Path, bad: _BadFiles) -> list[dict[str, Any]]:
    """Keep the files of a series whose slice size is the most common one; report the others."""
    shapes = Counter(i["shape"] for i in infos)
    if len(shapes) == 1:
        return infos
    main_shape = shapes.most_common(1)[0][0]
    examples = {shape: next(_rel(root, i["path"]) for i in infos if i["shape"] == shape) for shape in shapes}
    summary = ", ".join(f"{s[1]}x{s[0]} ({n} files, e.g. {examples[s]})" for s, n in shapes.items())
    kept = []
    for info in infos:
        if info["shape"] == main_shape:
            kept.append(info)
        else:
            bad.report(InputDataError(
                info["path"],
                f"DICOM series has inconsistent slice sizes: {summary}",
                "remove slices that belong to another series or re-export the series",
            ))
    return kept


# --------------------------------------------------------------------------- NIfTI


def _nifti_case(name: str) -> str | None:
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _nifti_index(folder: Path, root: Path | None = None, follow_links_outside: bool = False) -> dict[str, Path]:
    """Case name -> NIfTI file in ``folder`` (not recursive; links as in :func:`_list_files`).

    An ambiguous case is an error.
    """
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for path in _list_files(folder, None, root=root, follow_links_outside=follow_links_outside, recursive=False):
        case = _nifti_case(path.name)
        if case is None or (path.exists() and not path.is_file()):
            continue
        if case in index:
            raise InputDataError(path, f"case {case!r} has two files: {index[case].name} and {path.name}",
                                 "keep one file per case")
        index[case] = path
    return index


def _read_nifti(path: Path) -> np.ndarray:
    """Read a whole NIfTI volume -> display-oriented ``(S, H, W)`` stack (stored dtype)."""
    return _read_nifti_grid(path)[0]


def _read_nifti_grid(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a NIfTI volume -> ``(stack, canonical affine, stored orientation e.g. 'LPS')``.

    Scan and reload (:func:`load_image`, :func:`load_mask`) both go through
    :func:`lungsynth.data.volumes.nifti_to_stack_and_affine`, so they read the same
    canonical orientation.
    """
    import nibabel as nib

    _check_file(path)
    try:
        image = nib.load(path)
        stack, affine = nifti_to_stack_and_affine(image)
        codes = "".join(str(c) for c in nib.aff2axcodes(image.affine))
    except Exception as exc:  # truncated gzip (EOFError, zlib.error), short data, not a 3-D image, ...
        raise InputDataError(path, f"cannot read NIfTI volume ({type(exc).__name__}: {exc})", _CORRUPT_FIX) from exc
    return stack, affine, codes


def _read_labels_csv(path: Path) -> dict[str, str]:
    import pandas as pd

    if not path.is_file():
        raise InputDataError(path, "labels CSV not found",
                             "add the file or fix labels_csv (relative to the dataset path)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputDataError(path, f"cannot read labels CSV ({exc})", "write a CSV with columns patient,class") from exc
    missing = {"patient", "class"} - set(frame.columns)
    if missing:
        raise InputDataError(path, f"labels CSV lacks columns {sorted(missing)} (has {list(frame.columns)})",
                             "write a CSV with columns patient,class")
    labels: dict[str, str] = {}
    for patient, cls in zip(frame["patient"].str.strip(), frame["class"].str.strip()):
        if not patient or not cls:
            raise InputDataError(path, "labels CSV has a row with an empty patient or class", "fill in or remove it")
        if labels.get(patient, cls) != cls:
            raise InputDataError(path, f"patient {patient!r} is listed with classes {labels[patient]!r} and {cls!r}",
                                 "give each patient one class")
        labels[patient] = cls
    return labels


def scan_nifti(
    root: str | Path,
    *,
    images: str = "images",
    lung_masks: str = "lung_masks",
    infection_masks: str = "infection_masks",
    labels_csv: str | None = None,
    default_class: str | None = None,
    mask_labels: Iterable[int] | None = DEFAULT_MASK_LABELS,
    on_bad_file: str = "error",
    follow_links_outside: bool = False,
) -> tuple[list[Record], list[Skipped]]:
    """Scan NIfTI CT volumes (HU) ``images/<case>.nii[.gz]`` with optional same-case masks.

    One record per axial slice of the display-oriented stack
    (:func:`lungsynth.data.volumes.nifti_to_stack`): ``slice`` = stack index
    (0 = most inferior), ``patient`` = case, ``id`` = ``<case>_s<slice:03d>``.
    Mask folders may be absent; a case without a mask file gets ``''`` (logged).
    Masks must lie on the volume's voxel grid: after both are brought to
    canonical RAS+ voxel order their shapes must be equal and their affines
    agree within 1e-3 mm in the origin and 1e-4 in spacing and direction
    cosines (:func:`lungsynth.data.volumes.grid_mismatch`), so a mask stored in
    another voxel order with a matching affine loads aligned and a mirrored
    or shifted header is an error naming both files. Infection masks hold values in
    ``mask_labels``, lung masks any integer 0..255 (nonzero = lung). Class from
    ``labels_csv`` (columns patient,class; relative to ``root``; a case missing
    from it is an error) or ``default_class``.
    """
    root = Path(root)
    allowed = _check_mask_labels(mask_labels)
    if labels_csv is None and not default_class:
        raise ConfigError("nifti datasets need labels_csv or default_class to give each case a class")
    bad = _BadFiles(root, on_bad_file)
    labels_path = root / labels_csv if labels_csv is not None else None
    labels = _read_labels_csv(labels_path) if labels_path is not None else None
    image_dir = root / images
    if not image_dir.is_dir():
        raise InputDataError(image_dir, "NIfTI image folder is missing", "add the volumes or set nifti.images")
    links = {"root": root, "follow_links_outside": follow_links_outside}
    volumes = _nifti_index(image_dir, **links)
    if not volumes:
        raise InputDataError(image_dir, "no NIfTI volumes (*.nii, *.nii.gz)", EMPTY_CLASS_FIX)
    mask_dirs = {"mask": (root / infection_masks, allowed), "lung_mask": (root / lung_masks, None)}
    mask_index = {col: _nifti_index(folder, **links) for col, (folder, _) in mask_dirs.items()}
    case_class: dict[str, str] = {}
    for case in volumes:
        if labels is None:
            case_class[case] = str(default_class)
        elif case in labels:
            case_class[case] = labels[case]
        else:
            raise InputDataError(labels_path or root, f"case {case!r} ({_rel(root, volumes[case])}) is missing",
                                 "add a row 'case,class' for it or remove the volume")
    if labels is not None:
        unused = sorted(set(labels) - set(volumes))
        if unused:
            logger.warning("%d cases in %s have no volume (ignored), e.g. %s", len(unused), labels_csv, unused[0])
    records: list[Record] = []
    no_mask: Counter[str] = Counter()
    for case, path in volumes.items():
        bad.cls = case_class[case]
        try:
            stack, affine, codes = _read_nifti_grid(path)
        except InputDataError as err:
            bad.report(err)
            continue
        if stack.dtype.kind == "f" and not np.isfinite(stack).all():
            bad.report(InputDataError(path, "volume contains NaN or infinite values", "fix the export"))
            continue
        masks: dict[str, str] = {}
        try:
            for col, (folder, col_allowed) in mask_dirs.items():
                mask_path = mask_index[col].get(case)
                if mask_path is None:
                    no_mask[col] += 1
                    masks[col] = ""
                    continue
                mask, mask_affine, mask_codes = _read_nifti_grid(mask_path)
                if mask.shape != stack.shape:
                    raise InputDataError(mask_path, f"mask shape {mask.shape} differs from volume {_rel(root, path)} "
                                         f"shape {stack.shape} (slices, rows, columns)",
                                         "resample the mask to the volume grid or fix the case name")
                mismatch = grid_mismatch(mask_affine, affine)
                if mismatch is not None:
                    raise InputDataError(
                        mask_path,
                        f"mask header does not match its image {_rel(root, path)}: mask stored as {mask_codes}, "
                        f"image as {codes}; after reorienting both to RAS+: {mismatch} (mask vs image; tolerance "
                        f"{AFFINE_TRANSLATION_TOL_MM:g} mm origin, {AFFINE_LINEAR_TOL:g} spacing/directions)",
                        "resample/reorient the mask onto the image grid, or fix its header (affine) if only the "
                        "header is wrong",
                    )
                _labels_to_uint8(mask, mask_path, col_allowed)
                masks[col] = _rel(root, mask_path)
                del mask
        except InputDataError as err:
            bad.report(err, also=_rel(root, path))
            continue
        for k in range(stack.shape[0]):
            records.append(_record(
                id=f"{sanitize_id(case)}_s{k:03d}", patient=case, cls=case_class[case], fmt="nifti", unit="HU",
                source=_rel(root, path), slice=k, mask=masks["mask"], lung_mask=masks["lung_mask"],
            ))
        del stack
    for col, n in no_mask.items():
        if mask_dirs[col][0].is_dir():
            logger.warning("%d of %d volumes have no file in %s/", n, len(volumes), mask_dirs[col][0].name)
    present = {r["class"] for r in records}
    for cls in sorted(set(case_class.values()) - present):
        n_bad = sum(1 for s in bad.skipped if s.get("class") == cls)  # one entry per skipped case
        why = f" (all {n_bad} cases of this class were skipped as bad; see the log)" if n_bad else ""
        raise InputDataError(image_dir, f"class {cls!r} has no readable volumes{why}", EMPTY_CLASS_FIX)
    check_unique_ids(records, root)
    return records, bad.skipped


# --------------------------------------------------------------------------- dispatch


_NIFTI_KEYS = ("images", "lung_masks", "infection_masks")
_PAIRED_KEYS = ("images", "masks")


def _sub_spec(spec: Mapping[str, Any], key: str, allowed: Sequence[str]) -> dict[str, str]:
    sub = spec.get(key) or {}
    if not isinstance(sub, Mapping):
        raise ConfigError(f"{key} must be a mapping with keys {list(allowed)}, got {sub!r}")
    unknown = sorted(set(sub) - set(allowed))
    if unknown:
        raise ConfigError(f"{key}: unknown keys {unknown}; allowed: {list(allowed)}")
    return {k: str(v) for k, v in sub.items() if v is not None}


def scan_dataset(root: str | Path, spec: Mapping[str, Any]) -> tuple[list[Record], list[Skipped]]:
    """Run the reader named by ``spec["format"]`` with the spec's options.

    Keys used: ``format``, ``classes``, ``patient_regex``, ``on_bad_file``,
    ``follow_links_outside``, ``mask_labels``,
    ``nifti``, ``paired``, ``labels_csv``, ``default_class``;
    for ``lus_mat``/``lus_video`` (:mod:`lungsynth.data.ultrasound`) also
    ``scores_csv``, ``variable``, ``path_column``, ``score_column``,
    ``frame_stride``, ``max_frames``, ``scores``, ``split_by``
    (``None`` = default); other keys (``path``, ``split``, ...) are ignored.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"dataset spec must be a mapping, got {type(spec).__name__}")
    fmt = spec.get("format")
    on_bad_file = spec.get("on_bad_file") or "error"
    regex = spec.get("patient_regex")
    mask_labels = spec.get("mask_labels")
    follow = spec.get("follow_links_outside") or False
    if not isinstance(follow, bool):
        raise ConfigError(f"follow_links_outside must be true or false, got {follow!r}")
    if fmt == "image_folder":
        return scan_image_folder(root, spec.get("classes") or {}, patient_regex=regex, on_bad_file=on_bad_file,
                                 follow_links_outside=follow)
    if fmt == "dicom":
        return scan_dicom(root, spec.get("classes") or {}, on_bad_file=on_bad_file, follow_links_outside=follow)
    if fmt == "nifti":
        return scan_nifti(root, **_sub_spec(spec, "nifti", _NIFTI_KEYS), labels_csv=spec.get("labels_csv"),
                          default_class=spec.get("default_class"), mask_labels=mask_labels, on_bad_file=on_bad_file,
                          follow_links_outside=follow)
    if fmt == "paired_folder":
        return scan_paired_folder(root, **_sub_spec(spec, "paired", _PAIRED_KEYS),
                                  default_class=spec.get("default_class") or "covid", patient_regex=regex,
                                  mask_labels=mask_labels, on_bad_file=on_bad_file, follow_links_outside=follow)
    if fmt in ("lus_mat", "lus_video"):
        from lungsynth.data import ultrasound

        common = {
            "frame_stride": spec.get("frame_stride") or 1, "max_frames": spec.get("max_frames"),
            "scores": spec.get("scores") if spec.get("scores") is not None else (0, 1, 2, 3),
            "split_by": spec.get("split_by") or "patient", "patient_regex": regex, "on_bad_file": on_bad_file,
            "follow_links_outside": follow,
        }
        if fmt == "lus_mat":
            return ultrasound.scan_lus_mat(root, scores_csv=spec.get("scores_csv") or "scores.csv",
                                           variable=spec.get("variable"), mat_layout=spec.get("mat_layout") or "auto", **common)
        return ultrasound.scan_lus_videos(root, labels_csv=spec.get("labels_csv") or "labels.csv",
                                          path_column=spec.get("path_column") or "path",
                                          score_column=spec.get("score_column") or "lung_severity_score", **common)
    raise ConfigError(f"unknown dataset format {fmt!r}; expected one of {list(FORMATS)}")


def _record(*, id: str, patient: str, cls: str, fmt: str, unit: str, source: str, slice: int = 0,
            mask: str = "", lung_mask: str = "") -> Record:
    return {"id": id, "patient": patient, "class": cls, "format": fmt, "unit": unit, "source": source,
            "slice": int(slice), "mask": mask, "lung_mask": lung_mask}


# --------------------------------------------------------------------------- reload one slice


def _field(row: Any, key: str) -> str:
    """Text value of a manifest field; NaN/None (empty CSV cells) -> ''."""
    value = row.get(key, "")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


@functools.lru_cache(maxsize=3)
def _cached_stack(path: str, mtime_ns: int, size: int) -> np.ndarray:
    stack = _read_nifti(Path(path))
    stack.setflags(write=False)
    return stack


def _nifti_slice(path: Path, index: int) -> np.ndarray:
    """Slice ``index`` of a NIfTI stack; the last 3 volumes read are cached (rows of a volume are adjacent)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputDataError(path, f"cannot read file ({exc})", "re-run the ingest step") from exc
    stack = _cached_stack(str(path), stat.st_mtime_ns, stat.st_size)
    if not 0 <= index < stack.shape[0]:
        raise InputDataError(path, f"slice {index} out of range (volume has {stack.shape[0]} slices)",
                             "re-run the ingest step")
    return stack[index]


def clear_cache() -> None:
    """Drop the NIfTI volumes cached by :func:`load_image` / :func:`load_mask`."""
    _cached_stack.cache_clear()


def load_image(root: str | Path, row: Mapping[str, Any] | Any) -> np.ndarray:
    """Reload the pixels of one manifest row as float32 ``(H, W, C)``.

    ``unit == "HU"`` (DICOM, NIfTI): Hounsfield units, C = 1.
    ``unit == "8bit"``: 0..255; C = 1 for L (16-bit gray is scaled by 1/257,
    binary to 0/255), C = 3 for RGB and for RGBA/LA/P/CMYK (converted to RGB,
    alpha dropped). Grayscale stored as RGB stays C = 3, so a dataset can mix
    C = 1 and C = 3 images.
    """
    root = Path(root)
    fmt = _field(row, "format")
    path = root / _field(row, "source")
    if fmt in ("image_folder", "paired_folder"):
        return _read_8bit(path)
    if fmt == "dicom":
        return _read_dicom(path)[1][..., None]
    if fmt == "nifti":
        return _nifti_slice(path, int(row["slice"])).astype(np.float32)[..., None]
    if fmt in ("lus_mat", "lus_video"):
        from lungsynth.data.ultrasound import load_frame

        return load_frame(root, row)
    raise ConfigError(f"manifest row {_field(row, 'id')!r} has unknown format {fmt!r}")


def load_mask(root: str | Path, row: Mapping[str, Any] | Any, column: str = "mask") -> np.ndarray | None:
    """Reload the ``column`` mask (``mask`` or ``lung_mask``) of one row as uint8 ``(H, W)``.

    Values are label indices as stored (infection: 0 background, 1 ground-glass,
    2 consolidation; lung: nonzero = lung). ``None`` when the column is empty.
    """
    rel = _field(row, column)
    if not rel:
        return None
    path = Path(root) / rel
    if _field(row, "format") == "nifti":
        mask = _nifti_slice(path, int(row["slice"]))
        return _labels_to_uint8(mask, path, None)
    return _read_label_image(path, frozenset(range(256)))
