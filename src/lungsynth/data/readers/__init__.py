"""Dataset readers: scan a dataset folder into manifest records, reload one slice.

One module per on-disk layout, all built on :mod:`.common` (records, ids,
bad-file policy, file listing, PIL images, label maps):

* :mod:`.image_folder`: ``image_folder`` (class subfolders of 2-D images) and
  ``paired_folder`` (images with same-stem label masks), unit ``8bit``;
* :mod:`.dicom`: ``dicom`` (class subfolders of DICOM CT series), unit ``HU``;
* :mod:`.nifti`: ``nifti`` (CT volumes with optional masks), unit ``HU``;
* :mod:`.lus_mat`: ``lus_mat`` (MATLAB ``.mat`` lung-ultrasound clips and a
  scores CSV), unit ``8bit``;
* :mod:`.lus_video`: ``lus_video`` (lung-ultrasound video files and a labels
  CSV), unit ``8bit``.

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

:func:`scan_dataset` runs the reader a dataset spec names. :func:`load_image`
and :func:`load_mask` reload the pixels of one manifest row later (preprocess
stage); :func:`load_frame` reloads one lung-ultrasound frame with the ``.mat``
variable and layout the scan recorded. The last 3 NIfTI volumes and the last
2 clips read are cached (:func:`clear_cache`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lungsynth.data.readers.common import (
    DEFAULT_MASK_LABELS,
    DEFAULT_PATIENT_REGEX,
    EMPTY_CLASS_FIX,
    MANIFEST_COLUMNS,
    ON_BAD_FILE,
    RECORD_COLUMNS,
    Record,
    ScanRecords,
    Skipped,
    check_unique_ids,
    labels_to_uint8,
    pseudonymous_patient,
    read_8bit,
    read_label_image,
    sample_frames,
    sanitize_id,
)
from lungsynth.data.readers.dicom import DICOM_SUFFIXES, read_dicom, scan_dicom
from lungsynth.data.readers.image_folder import IMAGE_SUFFIXES, scan_image_folder, scan_paired_folder
from lungsynth.data.readers.lus_mat import MAT_LAYOUTS, MAT_SUFFIXES, check_mat_layout, read_mat, scan_lus_mat
from lungsynth.data.readers.lus_video import VIDEO_SUFFIXES, decode_video, scan_lus_videos
from lungsynth.data.readers.nifti import NIFTI_SUFFIXES, read_nifti, scan_nifti
from lungsynth.config import dataset_defaults
from lungsynth.errors import ConfigError, InputDataError

__all__ = [
    "FORMATS", "MANIFEST_COLUMNS", "RECORD_COLUMNS", "EMPTY_CLASS_FIX", "ON_BAD_FILE", "DEFAULT_MASK_LABELS",
    "DEFAULT_PATIENT_REGEX", "IMAGE_SUFFIXES", "DICOM_SUFFIXES", "NIFTI_SUFFIXES", "MAT_SUFFIXES", "MAT_LAYOUTS",
    "VIDEO_SUFFIXES", "Record", "Skipped", "ScanRecords", "sanitize_id", "pseudonymous_patient", "check_unique_ids",
    "sample_frames", "scan_dataset", "scan_image_folder", "scan_paired_folder", "scan_dicom", "scan_nifti",
    "scan_lus_mat", "scan_lus_videos", "load_image", "load_mask", "load_frame", "clear_cache",
]

FORMATS: tuple[str, ...] = ("image_folder", "dicom", "nifti", "paired_folder", "lus_mat", "lus_video")
"""Values of a dataset's ``format`` (:func:`scan_dataset`)."""


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
    for ``lus_mat``/``lus_video`` (:mod:`.lus_mat`, :mod:`.lus_video`) also
    ``scores_csv``, ``variable``, ``path_column``, ``score_column``,
    ``frame_stride``, ``max_frames``, ``scores``, ``split_by``
    (``None`` = default); other keys (``path``, ``split``, ...) are ignored.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"dataset spec must be a mapping, got {type(spec).__name__}")
    defaults = dataset_defaults()

    def option(key: str) -> Any:  # the spec's value, or the schema's default where it is absent or None
        value = spec.get(key)
        return defaults.get(key) if value is None else value

    fmt = spec.get("format")
    on_bad_file = option("on_bad_file")
    regex = spec.get("patient_regex")
    mask_labels = spec.get("mask_labels")
    follow = option("follow_links_outside")
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
        clips = {
            "frame_stride": option("frame_stride"), "max_frames": spec.get("max_frames"), "scores": option("scores"),
            "split_by": option("split_by"), "patient_regex": regex, "on_bad_file": on_bad_file,
            "follow_links_outside": follow,
        }
        if fmt == "lus_mat":
            return scan_lus_mat(root, scores_csv=option("scores_csv"), variable=spec.get("variable"),
                                mat_layout=option("mat_layout"), **clips)
        # labels_csv is shared with nifti, whose default is none: the POCUS layout's file is labels.csv
        return scan_lus_videos(root, labels_csv=spec.get("labels_csv") or "labels.csv",
                               path_column=option("path_column"), score_column=option("score_column"), **clips)
    raise ConfigError(f"unknown dataset format {fmt!r}; expected one of {list(FORMATS)}")


# --------------------------------------------------------------------------- reload one slice


def _field(row: Any, key: str) -> str:
    """Text value of a manifest field; NaN/None (empty CSV cells) -> ''."""
    value = row.get(key, "")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


@functools.lru_cache(maxsize=3)
def _cached_stack(path: str, mtime_ns: int, size: int) -> np.ndarray:
    stack = read_nifti(Path(path))
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
        return read_8bit(path)
    if fmt == "dicom":
        return read_dicom(path)[1][..., None]
    if fmt == "nifti":
        return _nifti_slice(path, int(row["slice"])).astype(np.float32)[..., None]
    if fmt in ("lus_mat", "lus_video"):
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
        return labels_to_uint8(mask, path, None)
    return read_label_image(path, frozenset(range(256)))


# --------------------------------------------------------------------------- reload one frame (lus_mat, lus_video)


@functools.lru_cache(maxsize=2)
def _cached_clip(path: str, mtime_ns: int, size: int, fmt: str, variable: str | None,
                 mat_layout: str = "auto") -> tuple[np.ndarray, bool]:
    """Decoded clip ``(N, H, W, C)`` stored as ``(N, H, W, 1)`` when RGB channels are equal; flag = was RGB."""
    p = Path(path)
    clip = read_mat(p, variable, mat_layout) if fmt == "lus_mat" else decode_video(p)
    rgb = clip.shape[-1] == 3
    if rgb and (clip[..., 0] == clip[..., 1]).all() and (clip[..., 1] == clip[..., 2]).all():
        clip = np.ascontiguousarray(clip[..., :1])  # gray stored as RGB: keep a third of the memory
    clip.setflags(write=False)
    return clip, rgb


def clear_cache() -> None:
    """Drop the cached NIfTI volumes (:func:`load_image`, :func:`load_mask`) and clips (:func:`load_frame`)."""
    _cached_stack.cache_clear()
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
                             check_mat_layout(mat_layout or None))
    index = int(row["slice"])
    if not 0 <= index < clip.shape[0]:
        raise InputDataError(path, f"frame {index} out of range (clip has {clip.shape[0]} frames)",
                             "re-run the ingest step")
    frame = clip[index].astype(np.float32)
    if rgb and frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame
