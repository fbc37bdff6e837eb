"""NIfTI CT volumes: ``images/<case>.nii[.gz]`` in HU, with optional same-case lung and infection masks.

``<root>/images/<case>.nii[.gz]`` (Hounsfield units), ``<root>/lung_masks/``
and ``<root>/infection_masks/`` (same case names, same voxel grid; lung: any
integer 0..255, nonzero = lung; infection: label indices in ``mask_labels``,
default 0 background, 1 ground-glass, 2 consolidation); class per case from a
``labels_csv`` (columns patient,class) or ``default_class``. Volumes are read
as display-oriented ``(S, H, W)`` stacks
(:func:`lungsynth.data.volumes.nifti_to_stack_and_affine`): one record per axial
slice, ``slice`` = stack index (0 = most inferior). Details in :func:`scan_nifti`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lungsynth.data.readers.common import (
    CORRUPT_FIX,
    DEFAULT_MASK_LABELS,
    EMPTY_CLASS_FIX,
    BadFiles,
    Record,
    Skipped,
    check_file,
    check_mask_labels,
    check_unique_ids,
    labels_to_uint8,
    list_files,
    make_record,
    rel_path,
    sanitize_id,
)
from lungsynth.data.volumes import AFFINE_LINEAR_TOL, AFFINE_TRANSLATION_TOL_MM, grid_mismatch, nifti_to_stack_and_affine
from lungsynth.errors import ConfigError, InputDataError

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")


def _nifti_case(name: str) -> str | None:
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _nifti_index(folder: Path, root: Path | None = None, follow_links_outside: bool = False) -> dict[str, Path]:
    """Case name -> NIfTI file in ``folder`` (not recursive; links as in :func:`.common.list_files`).

    An ambiguous case is an error.
    """
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for path in list_files(folder, None, root=root, follow_links_outside=follow_links_outside, recursive=False):
        case = _nifti_case(path.name)
        if case is None or (path.exists() and not path.is_file()):
            continue
        if case in index:
            raise InputDataError(path, f"case {case!r} has two files: {index[case].name} and {path.name}",
                                 "keep one file per case")
        index[case] = path
    return index


def read_nifti(path: Path) -> np.ndarray:
    """Read a whole NIfTI volume -> display-oriented ``(S, H, W)`` stack (stored dtype)."""
    return _read_nifti_grid(path)[0]


def _read_nifti_grid(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a NIfTI volume -> ``(stack, canonical affine, stored orientation e.g. 'LPS')``.

    Scan and reload (:func:`lungsynth.data.readers.load_image`, :func:`lungsynth.data.readers.load_mask`)
    both go through :func:`lungsynth.data.volumes.nifti_to_stack_and_affine`, so they read the same
    canonical orientation.
    """
    import nibabel as nib

    check_file(path)
    try:
        image = nib.load(path)
        stack, affine = nifti_to_stack_and_affine(image)
        codes = "".join(str(c) for c in nib.aff2axcodes(image.affine))
    except Exception as exc:  # truncated gzip (EOFError, zlib.error), short data, not a 3-D image, ...
        raise InputDataError(path, f"cannot read NIfTI volume ({type(exc).__name__}: {exc})", CORRUPT_FIX) from exc
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
    allowed = check_mask_labels(mask_labels)
    if labels_csv is None and not default_class:
        raise ConfigError("nifti datasets need labels_csv or default_class to give each case a class")
    bad = BadFiles(root, on_bad_file)
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
            raise InputDataError(labels_path or root, f"case {case!r} ({rel_path(root, volumes[case])}) is missing",
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
                    raise InputDataError(mask_path, f"mask shape {mask.shape} differs from volume "
                                         f"{rel_path(root, path)} shape {stack.shape} (slices, rows, columns)",
                                         "resample the mask to the volume grid or fix the case name")
                mismatch = grid_mismatch(mask_affine, affine)
                if mismatch is not None:
                    raise InputDataError(
                        mask_path,
                        f"mask header does not match its image {rel_path(root, path)}: mask stored as {mask_codes}, "
                        f"image as {codes}; after reorienting both to RAS+: {mismatch} (mask vs image; tolerance "
                        f"{AFFINE_TRANSLATION_TOL_MM:g} mm origin, {AFFINE_LINEAR_TOL:g} spacing/directions)",
                        "resample/reorient the mask onto the image grid, or fix its header (affine) if only the "
                        "header is wrong",
                    )
                labels_to_uint8(mask, mask_path, col_allowed)
                masks[col] = rel_path(root, mask_path)
                del mask
        except InputDataError as err:
            bad.report(err, also=rel_path(root, path))
            continue
        for k in range(stack.shape[0]):
            records.append(make_record(
                id=f"{sanitize_id(case)}_s{k:03d}", patient=case, cls=case_class[case], fmt="nifti", unit="HU",
                source=rel_path(root, path), slice=k, mask=masks["mask"], lung_mask=masks["lung_mask"],
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
