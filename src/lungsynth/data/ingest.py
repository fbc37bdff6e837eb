"""Ingest one dataset: scan, validate, split, and write the manifest.

The manifest (one row per 2-D slice, columns
:data:`lungsynth.data.readers.MANIFEST_COLUMNS`), the skipped-files report and the
files report (``files.csv``: how each source file was read, one row per file,
:data:`FILES_COLUMNS`) are written only after every check passed, each
atomically, so a failed ingest leaves none of them behind.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.artifacts import write_csv
from lungsynth.data.readers import EMPTY_CLASS_FIX, MANIFEST_COLUMNS, RECORD_COLUMNS, check_unique_ids, scan_dataset
from lungsynth.data.splits import assign_splits, check_no_leakage

logger = logging.getLogger(__name__)

SKIPPED_COLUMNS: tuple[str, ...] = ("path", "problem")
FILES_COLUMNS: tuple[str, ...] = ("source", "format", "slices", "frames", "how_read", "variable", "layout", "resolved_by")
"""Columns of ``files.csv``: the source file (as in the manifest), its format, its slices in the manifest,
its frames/slices read, how it was read (short text without identifiers), and for ``lus_mat`` the
array and layout read (which preprocessing reloads with) and ``resolved_by`` (``auto rule``,
``mat_layout`` or empty)."""
DEFAULT_HOW_READ: dict[str, str] = {
    "image_folder": "image file via Pillow (8-bit)",
    "paired_folder": "image file via Pillow (8-bit) with a mask image",
    "dicom": "DICOM slice via pydicom (HU)",
    "nifti": "NIfTI volume via nibabel (HU), one row per axial slice",
    "lus_mat": ".mat clip via scipy",
    "lus_video": "video file",
}
"""``how_read`` of files whose reader does not describe its reading (keyed by the manifest format)."""


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Reader records -> DataFrame with :data:`RECORD_COLUMNS` (``slice`` int, the rest str)."""
    frame = pd.DataFrame(records, columns=list(RECORD_COLUMNS))
    return frame.astype({c: (int if c == "slice" else str) for c in RECORD_COLUMNS})


def files_frame(records: list[dict[str, Any]], manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per source file of ``records`` (scan order), columns :data:`FILES_COLUMNS`.

    The reading comes from the scan (``records.readings``, see
    :class:`lungsynth.data.readers.ScanRecords`) or, for readers that do not
    describe it, :data:`DEFAULT_HOW_READ`; ``slices`` counts the file's rows in
    ``manifest``, ``frames`` its scanned frames/slices unless the reader said.
    """
    readings = getattr(records, "readings", None) or {}
    scanned: dict[str, list[Any]] = {}
    for rec in records:
        entry = scanned.setdefault(str(rec["source"]), [str(rec["format"]), 0])
        entry[1] += 1
    in_manifest = manifest["source"].value_counts().to_dict() if len(manifest) else {}
    rows = []
    for source, (fmt, n) in scanned.items():
        reading = readings.get(source, {})
        rows.append({
            "source": source, "format": fmt, "slices": int(in_manifest.get(source, 0)),
            "frames": int(reading.get("frames", n)),
            "how_read": str(reading.get("how_read") or DEFAULT_HOW_READ.get(fmt, fmt)),
            "variable": str(reading.get("variable") or ""), "layout": str(reading.get("layout") or ""),
            "resolved_by": str(reading.get("resolved_by") or ""),
        })
    return pd.DataFrame(rows, columns=list(FILES_COLUMNS))


def read_files(path: str | Path) -> pd.DataFrame:
    """Read a ``files.csv`` (all columns str, empty cells '')."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in FILES_COLUMNS if c not in frame.columns]
    if missing:
        raise InputDataError(path, f"files report lacks columns {missing}", "re-run the ingest step")
    return frame


def mat_reload_options(manifest_path: str | Path, manifest: pd.DataFrame | None = None) -> dict[str, dict[str, str]]:
    """``source -> {"variable", "mat_layout"}`` of the ``lus_mat`` files, from ``files.csv`` beside the manifest.

    What :func:`lungsynth.data.readers.load_frame` needs to reload a frame from
    the array and in the layout the scan read. ``{}`` when there is no
    ``files.csv`` (a manifest written without one: frames reload with the
    default reading, the largest array and the auto rule). With ``manifest``,
    a ``.mat`` source of it missing from ``files.csv`` is an error.
    """
    path = Path(manifest_path).with_name("files.csv")
    if not path.is_file():
        return {}
    files = read_files(path)
    mats = files[(files["format"] == "lus_mat") & (files["layout"] != "")]
    out = {s: {"variable": v, "mat_layout": lay} for s, v, lay in zip(mats["source"], mats["variable"], mats["layout"])}
    if manifest is not None:
        missing = sorted(set(manifest.loc[manifest["format"] == "lus_mat", "source"]) - set(out))
        if missing:
            raise InputDataError(path, f"has no reading of {len(missing)} .mat file(s) of the manifest beside it, "
                                 f"e.g. {missing[0]}", "re-run the ingest step (it writes both)")
    return out


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV with the right types: ``slice`` int, every other column str, empty cells ''.

    (Plain ``pandas.read_csv`` would turn ids such as ``"1029"`` into ints and
    empty mask cells into NaN.)
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise InputDataError(path, f"manifest lacks columns {missing}", "re-run the ingest step")
    return frame.astype({"slice": int})


def _check_classes_present(df: pd.DataFrame, spec: Mapping[str, Any], root: Path, when: str) -> None:
    classes = spec.get("classes") if spec.get("format") in ("image_folder", "dicom") else None
    for cls, sub in (classes or {}).items():
        if not (df["class"] == cls).any():
            raise InputDataError(root / sub, f"class {cls!r} has no slices {when}", EMPTY_CLASS_FIX)
    if df.empty:
        raise InputDataError(root, f"the dataset has no slices {when}", EMPTY_CLASS_FIX)


def ingest_dataset(
    root: str | Path,
    spec: Mapping[str, Any],
    manifest_path: str | Path,
    skipped_path: str | Path,
    files_path: str | Path | None = None,
) -> pd.DataFrame:
    """Scan ``root`` as described by ``spec``, assign splits and write the manifest.

    Steps: :func:`lungsynth.data.readers.scan_dataset`; every configured class
    present; unique ids; :func:`lungsynth.data.splits.assign_splits` (spec keys
    ``split: {fractions, seed}`` and ``split_lists``); every class still
    present; :func:`lungsynth.data.splits.check_no_leakage`. Then writes the
    manifest CSV, the skipped CSV (columns path, problem; header only when
    nothing was skipped) and, when ``files_path`` is given, the files CSV
    (:func:`files_frame`; name it ``files.csv`` beside the manifest, where
    preprocessing looks for it). Nothing is written when a step fails. Returns the
    manifest frame (``attrs["unlisted"]``: slices dropped for being in no
    split list).
    """
    root = Path(root)
    records, skipped = scan_dataset(root, spec)
    frame = records_to_frame(records)
    _check_classes_present(frame, spec, root, "after scanning")
    check_unique_ids(records, root)
    split_cfg = spec.get("split") or {}
    if not isinstance(split_cfg, Mapping):
        raise ConfigError(f"split must be a mapping with keys fractions, seed; got {split_cfg!r}")
    seed = split_cfg.get("seed", 0)
    manifest = assign_splits(
        frame,
        fractions=split_cfg.get("fractions"),
        seed=0 if seed is None else int(seed),
        split_lists=spec.get("split_lists"),
        root=root,
        skipped_files=[s["path"] for s in skipped],
        # so that a class left with too few patients by skipped files says so
        skipped_per_class=dict(Counter(s.get("class", "") for s in skipped)),
        # an ultrasound exam scores each lung area, so one patient can carry several classes
        multiclass_patients=spec.get("format") in ("lus_mat", "lus_video") and spec.get("split_by", "patient") == "patient",
    )
    _check_classes_present(manifest, spec, root, "listed in split_lists")
    check_no_leakage(manifest)
    skipped_frame = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    files = files_frame(records, manifest) if files_path is not None else None
    write_csv(skipped_path, skipped_frame)
    if files is not None:
        write_csv(files_path, files)
    write_csv(manifest_path, manifest)
    counts = pd.crosstab(manifest["class"], manifest["split"])
    logger.info(
        "ingested %s: %d slices of %d patients, %d skipped, %d unlisted\n%s",
        root, len(manifest), manifest["patient"].nunique(), len(skipped_frame),
        manifest.attrs.get("unlisted", 0), counts.to_string(),
    )
    return manifest
