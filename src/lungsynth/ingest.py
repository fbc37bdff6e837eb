"""Ingest one dataset: scan, validate, split, and write the manifest.

The manifest (one row per 2-D slice, columns
:data:`lungsynth.readers.MANIFEST_COLUMNS`) and the skipped-files report are
written only after every check passed, each atomically, so a failed ingest
leaves neither behind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.io_utils import write_csv
from lungsynth.readers import EMPTY_CLASS_FIX, MANIFEST_COLUMNS, RECORD_COLUMNS, check_unique_ids, scan_dataset
from lungsynth.splits import assign_splits, check_no_leakage

logger = logging.getLogger(__name__)

SKIPPED_COLUMNS: tuple[str, ...] = ("path", "problem")


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Reader records -> DataFrame with :data:`RECORD_COLUMNS` (``slice`` int, the rest str)."""
    frame = pd.DataFrame(records, columns=list(RECORD_COLUMNS))
    return frame.astype({c: (int if c == "slice" else str) for c in RECORD_COLUMNS})


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
) -> pd.DataFrame:
    """Scan ``root`` as described by ``spec``, assign splits and write the manifest.

    Steps: :func:`lungsynth.readers.scan_dataset`; every configured class
    present; unique ids; :func:`lungsynth.splits.assign_splits` (spec keys
    ``split: {fractions, seed}`` and ``split_lists``); every class still
    present; :func:`lungsynth.splits.check_no_leakage`. Then writes the
    manifest CSV and the skipped CSV (columns path, problem; header only when
    nothing was skipped). Nothing is written when a step fails. Returns the
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
        # an ultrasound exam scores each lung area, so one patient can carry several classes
        multiclass_patients=spec.get("format") in ("lus_mat", "lus_video") and spec.get("split_by", "patient") == "patient",
    )
    _check_classes_present(manifest, spec, root, "listed in split_lists")
    check_no_leakage(manifest)
    skipped_frame = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    write_csv(skipped_path, skipped_frame)
    write_csv(manifest_path, manifest)
    counts = pd.crosstab(manifest["class"], manifest["split"])
    logger.info(
        "ingested %s: %d slices of %d patients, %d skipped, %d unlisted\n%s",
        root, len(manifest), manifest["patient"].nunique(), len(skipped_frame),
        manifest.attrs.get("unlisted", 0), counts.to_string(),
    )
    return manifest
