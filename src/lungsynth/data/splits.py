"""Patient-level, class-stratified train/val/test splits, and a leakage check.

Splits are drawn per patient, never per slice, so that no patient's slices end
up on both sides of a train/test boundary. Two ways to set them:

* fractions (default 0.6/0.2/0.2 of each class's slices), drawn with a seed;
* split lists: text files naming the files of each split (COVID-CT
  ``Data-split`` layout); unlisted files are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.data.readers import MANIFEST_COLUMNS

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.6, "val": 0.2, "test": 0.2}


class SplitLeakageError(InputDataError):
    """A patient's slices are in more than one split."""


def _check_fractions(fractions: Mapping[str, float] | None) -> dict[str, float]:
    """Validate fractions; ``None``/empty = defaults, splits left out of a given mapping get 0."""
    given = dict(fractions or DEFAULT_FRACTIONS)
    unknown = sorted(set(given) - set(SPLITS))
    if unknown:
        raise ConfigError(f"split.fractions: unknown splits {unknown}; allowed: {list(SPLITS)}")
    out: dict[str, float] = {}
    for name in SPLITS:
        value = given.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"split.fractions.{name} must be a number in [0, 1], got {value!r}")
        out[name] = float(value)
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise ConfigError(f"split.fractions must sum to 1, got {out} (sum {sum(out.values()):g})")
    return out


def check_patient_classes(df: pd.DataFrame) -> None:
    """Raise :class:`InputDataError` when a patient's slices carry two different classes."""
    n_classes = df.groupby("patient", sort=True)["class"].nunique()
    mixed = n_classes[n_classes > 1]
    if len(mixed):
        patient = mixed.index[0]
        rows = df[df["patient"] == patient]
        examples = rows.drop_duplicates("class")
        listing = ", ".join(f"{c}: {s}" for c, s in zip(examples["class"], examples["source"]))
        raise InputDataError(
            examples["source"].iloc[0],
            f"patient {patient!r} has slices of several classes ({listing})"
            + (f"; {len(mixed) - 1} more patients like it" if len(mixed) > 1 else ""),
            "give each patient one class (check the class folders / labels CSV) or adjust patient_regex",
        )


def _skip_note(cls: str | None, skipped_per_class: Mapping[str, int] | None) -> str:
    """`` (N files of this class were skipped as bad; ...)`` when skipping may have caused a split error."""
    if not skipped_per_class:
        return ""
    n = skipped_per_class.get(cls, 0) if cls is not None else sum(skipped_per_class.values())
    if n:
        what = "of this class " if cls is not None else ""
        return f" ({n} file(s) {what}were skipped as bad (on_bad_file: skip); see the log and the skipped-files report)"
    unknown = skipped_per_class.get("", 0)
    if unknown:
        return f" ({unknown} file(s) of unknown class were skipped as bad (on_bad_file: skip); see the log)"
    return ""


def _split_class(counts: pd.Series, fractions: dict[str, float], seed: int, cls: str,
                 skipped_per_class: Mapping[str, int] | None = None) -> dict[str, str]:
    """Patient -> split for one class; ``counts`` = slices per patient."""
    active = [s for s in SPLITS if fractions[s] > 0]
    patients = sorted(counts.index)
    if len(patients) < len(active):
        note = _skip_note(cls, skipped_per_class)
        raise InputDataError(
            "manifest",
            f"class {cls!r} has {len(patients)} patient(s); splits {active} need at least one patient each "
            f"(val/test need at least one each){note}",
            ("fix or replace the skipped files, " if note else "")
            + "add patients to the class, set the fraction of a split to 0, or give split lists",
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    return _greedy_assignment([patients[i] for i in order], counts, active, fractions)


def _greedy_assignment(shuffled: list[str], counts: pd.Series, active: list[str],
                       fractions: dict[str, float]) -> dict[str, str]:
    """Patient -> split: each patient in ``shuffled`` order goes to the split furthest below its target
    share of all slices (``counts``: slices per patient, each >= 1); once only as many patients are
    left as splits are empty, they go to the empty splits, so every active split gets one."""
    total = float(counts.sum())
    slices = dict.fromkeys(active, 0.0)
    assignment: dict[str, str] = {}
    for i, patient in enumerate(shuffled):
        empty = [s for s in active if slices[s] == 0]
        left = len(shuffled) - i
        candidates = empty if empty and left <= len(empty) else active
        split = max(candidates, key=lambda s: (fractions[s] * total - slices[s], fractions[s], -SPLITS.index(s)))
        assignment[patient] = split
        slices[split] += float(counts[patient])
    return assignment


def _split_patients(df: pd.DataFrame, fractions: dict[str, float], seed: int,
                    skipped_per_class: Mapping[str, int] | None = None) -> dict[str, str]:
    """Patient -> split when a patient's slices may carry several classes (lung-ultrasound exams).

    Whole patients are shuffled with ``seed`` and each goes to the split furthest below its
    target share of all slices; afterwards every split with a nonzero fraction must hold every
    class, else an error says which class is missing where.
    """
    active = [s for s in SPLITS if fractions[s] > 0]
    counts = df.groupby("patient").size()
    patients = sorted(counts.index)
    if len(patients) < len(active):
        raise InputDataError("manifest", f"{len(patients)} patient(s) for splits {active}"
                             + _skip_note(None, skipped_per_class),
                             "add patients, set the fraction of a split to 0, or split by video")
    order = np.random.default_rng(seed).permutation(len(patients))
    assignment = _greedy_assignment([patients[i] for i in order], counts, active, fractions)
    splits = df["patient"].map(assignment)
    for cls in sorted(df["class"].unique()):
        present = set(splits[df["class"] == cls])
        missing = [s for s in active if s not in present]
        if missing:
            raise InputDataError(
                "manifest",
                f"patient-level split leaves class {cls!r} out of split(s) {missing} "
                f"({df.loc[df['class'] == cls, 'patient'].nunique()} patient(s) have it)"
                + _skip_note(cls if cls in (skipped_per_class or {}) else None, skipped_per_class),
                "change split.seed, add patients with that class, or split by video",
            )
    return assignment


def _read_split_lists(split_lists: Mapping[str, Any], root: Path) -> dict[str, tuple[str, Path]]:
    """Listed basename -> (split, list file)."""
    listed: dict[str, tuple[str, Path]] = {}
    for split, files in split_lists.items():
        if split not in SPLITS:
            raise ConfigError(f"split_lists: unknown split {split!r}; allowed: {list(SPLITS)}")
        for rel in [files] if isinstance(files, str) else list(files or []):
            path = root / rel
            if not path.is_file():
                raise InputDataError(path, "split list file not found",
                                     "fix the path in split_lists (relative to the dataset path)")
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                name = PurePosixPath(line.strip().replace("\\", "/")).name
                if not name or name.startswith("#"):
                    continue
                previous = listed.get(name)
                if previous is not None and previous[0] != split:
                    raise InputDataError(path, f"{name!r} is listed for split {split!r} here and for "
                                         f"{previous[0]!r} in {previous[1]}", "list each file in one split only")
                listed[name] = (split, path)
    return listed


def _splits_from_lists(df: pd.DataFrame, split_lists: Mapping[str, Any], root: Path,
                       skipped_files: Collection[str]) -> pd.DataFrame:
    listed = _read_split_lists(split_lists, root)
    basenames = df["source"].map(lambda s: PurePosixPath(s).name)
    sources_by_name = df.groupby(basenames)["source"].unique()
    skipped_names = {PurePosixPath(p).name for p in skipped_files}
    missing: dict[Path, list[str]] = {}
    for name, (split, list_file) in listed.items():
        if name not in sources_by_name.index:
            if name not in skipped_names:
                missing.setdefault(list_file, []).append(name)
        elif len(sources_by_name[name]) > 1:
            matches = ", ".join(sorted(sources_by_name[name]))
            raise InputDataError(list_file, f"{name!r} matches several files: {matches}",
                                 "rename the files so that file names are unique across the dataset")
    for list_file, names in missing.items():
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        raise InputDataError(list_file, f"lists files that match no scanned file: {shown}",
                             "add the files, remove the lines, or check that they were not skipped as bad")
    out = df.copy()
    out["split"] = basenames.map(lambda n: listed[n][0] if n in listed else "")
    unlisted = int((out["split"] == "").sum())
    out = out[out["split"] != ""].reset_index(drop=True)
    if unlisted:
        logger.warning("%d slices are in no split list and were dropped", unlisted)
    out.attrs["unlisted"] = unlisted
    return out


def assign_splits(
    records_df: pd.DataFrame,
    *,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    split_lists: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    skipped_files: Iterable[str] = (),
    multiclass_patients: bool = False,
    skipped_per_class: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Return a copy of ``records_df`` with the ``split`` column (train|val|test) filled.

    ``multiclass_patients``: a patient may have slices of several classes (a lung-ultrasound
    exam scores each area); whole patients are then split without per-class stratification
    (:func:`_split_patients`), and every class must still reach every split.

    Without ``split_lists``: per class, the sorted patients are shuffled with
    ``numpy.random.default_rng(seed)`` and each goes to the split furthest
    below its target share of the class's slices (``fractions``: default
    0.6/0.2/0.2; must sum to 1; a split left out gets 0); every split
    with a nonzero fraction gets at least one patient of every class.

    With ``split_lists`` (split -> list files relative to ``root`` naming file
    basenames, one per line), listed files get that split and unlisted slices
    are dropped; their count is in ``result.attrs["unlisted"]``. A listed name
    matching no scanned file is an error unless it is the basename of one of
    ``skipped_files`` (bad files left out by the reader).

    ``skipped_per_class`` (class -> number of files the reader skipped as bad;
    key ``""`` for files of unknown class) only words the errors: a class with
    too few patients for the splits says that skipping caused it.

    Columns come back in manifest order (:data:`lungsynth.data.readers.MANIFEST_COLUMNS`).
    """
    df = records_df.drop(columns=["split"], errors="ignore").reset_index(drop=True)
    if not multiclass_patients:
        check_patient_classes(df)
    if split_lists:
        if root is None:
            raise ConfigError("split_lists needs the dataset root to resolve the list files")
        out = _splits_from_lists(df, split_lists, Path(root), set(skipped_files))
    else:
        fr = _check_fractions(fractions)
        out = df.copy()
        out["split"] = ""
        if multiclass_patients:
            out["split"] = df["patient"].map(_split_patients(df, fr, seed, skipped_per_class))
        for cls in sorted(df["class"].unique()) if not multiclass_patients else []:
            rows = df["class"] == cls
            counts = df.loc[rows].groupby("patient").size()
            assignment = _split_class(counts, fr, seed, cls, skipped_per_class)
            out.loc[rows, "split"] = df.loc[rows, "patient"].map(assignment)
        out.attrs["unlisted"] = 0
    columns = [c for c in MANIFEST_COLUMNS if c in out.columns] + [c for c in out.columns if c not in MANIFEST_COLUMNS]
    attrs = dict(out.attrs)
    out = out[columns]
    out.attrs.update(attrs)
    return out


def check_no_leakage(df: pd.DataFrame) -> None:
    """Raise :class:`SplitLeakageError` naming the patients found in more than one split."""
    per_patient = df.groupby("patient", sort=True)["split"].unique()
    leaked = per_patient[per_patient.map(len) > 1]
    if len(leaked):
        shown = "; ".join(f"{p}: {', '.join(sorted(s))}" for p, s in list(leaked.items())[:10])
        more = f" ({len(leaked)} patients in all)" if len(leaked) > 10 else ""
        raise SplitLeakageError(
            "manifest",
            f"patients in more than one split: {shown}{more}",
            "list each patient's files in one split only, or check patient_regex",
        )
