"""DICOM CT: class subfolders holding single-frame grayscale DICOM series (any file names, recursive).

``<root>/<class subfolder>/**/<file>``: a file is DICOM by its ``DICM``
marker at byte 128 or its ``.dcm`` suffix; files are grouped into series by
SeriesInstanceUID and ranked along the slice normal (``slice`` = rank,
0 = most inferior). Unit ``HU``: stored values * RescaleSlope +
RescaleIntercept, float32 ``(H, W)``. ``patient`` is a pseudonym of PatientID
(:func:`~lungsynth.data.readers.common.pseudonymous_patient`). Details in
:func:`scan_dicom`.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lungsynth.data.readers.common import (
    CORRUPT_FIX,
    BadFiles,
    Record,
    Skipped,
    check_classes,
    check_file,
    check_unique_ids,
    class_folder,
    empty_class,
    list_files,
    make_record,
    pseudonymous_patient,
    rel_path,
)
from lungsynth.errors import InputDataError

logger = logging.getLogger(__name__)

DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm"})


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


def read_dicom(path: Path) -> tuple[Any, np.ndarray]:
    """Parse one single-frame grayscale DICOM -> ``(dataset, HU float32 (H, W))``."""
    import pydicom

    check_file(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # InvalidDicomError, EOFError, OSError, struct/value errors on truncation
        raise InputDataError(path, f"cannot parse DICOM ({type(exc).__name__}: {exc})", CORRUPT_FIX) from exc
    if "PixelData" not in ds:
        sop = _sop_class_name(ds)
        if len(ds) == 0:  # pydicom stops quietly at the end of a cut-off file
            raise InputDataError(path, f"DICOM file is truncated: it ends within its header ({path.stat().st_size} "
                                 "bytes, no data elements after the file meta information)", CORRUPT_FIX)
        if "Image Storage" in sop or ("Rows" in ds and "Columns" in ds):  # an image whose pixel data was cut off
            raise InputDataError(path, f"DICOM file is truncated: it is an image ({sop or 'Rows, Columns'}) but "
                                 f"ends before its pixel data ({path.stat().st_size} bytes)", CORRUPT_FIX)
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
            raise InputDataError(path, short, CORRUPT_FIX)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # damaged data, unsupported transfer syntax without a decoder, ...
        problem = f"cannot decode DICOM pixel data ({type(exc).__name__}: {exc}); transfer syntax {syntax}"
        fix = CORRUPT_FIX
        if compressed:
            problem += " is compressed"
            fix = ("install a decoder for it (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg, or "
                   "python-gdcm), or re-export the series uncompressed; if a decoder is installed, " + CORRUPT_FIX)
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
    a bad file. Symbolic links as in :func:`~lungsynth.data.readers.common.list_files`.

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
    classes = check_classes(classes)
    bad = BadFiles(root, on_bad_file)
    records: list[Record] = []
    identifying_paths = 0
    seen: dict[tuple[int, int], Path] = {}
    for cls, sub in classes.items():
        folder = class_folder(root, cls, sub)
        bad.cls = cls
        listed = list_files(folder, None, root=root, follow_links_outside=follow_links_outside, seen=seen)
        files = _dicom_files(listed, root, folder)
        if not listed:
            raise empty_class(cls, folder, "has no DICOM files (the folder holds no files)")
        if not files:
            examples = ", ".join(rel_path(root, p) for p in listed[:3])
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
                ds, hu = read_dicom(path)
            except InputDataError as err:
                bad.report(err)
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
            key = uid or f"folder:{rel_path(root, path.parent)}"
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
                               rel_path(root, infos[0]["path"].parent), method)
            if method == "position" and len({round(k[0], 3) for k in keys}) < len(keys):
                logger.warning("series %s: several slices share a position (two series under one UID?)",
                               rel_path(root, infos[0]["path"].parent))
            ordered = [info for _, info in sorted(zip(keys, infos), key=lambda t: t[0])]
            patient = pseudonymous_patient(infos[0]["identity"])
            if any(_path_names_identity(rel_path(root, infos[0]["path"]), name) for name in infos[0]["names"]):
                identifying_paths += 1
            series_tag = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
            for rank, info in enumerate(ordered):
                records.append(make_record(
                    id=f"{patient}_{series_tag}_s{rank:03d}", patient=patient, cls=cls, fmt="dicom", unit="HU",
                    source=rel_path(root, info["path"]), slice=rank,
                ))
        if len(records) == n_before:
            raise empty_class(cls, folder, f"has no readable DICOM files (all {len(files)} were bad)")
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
            logger.info("%s: DICOMDIR index file ignored (the series files are read directly)", rel_path(root, path))
        elif path.suffix.lower() in DICOM_SUFFIXES or _has_dicm_marker(path) or not path.exists():
            files.append(path)  # a broken link is reported by read_dicom
        else:
            ignored.append(path)
    if ignored:
        empty = sum(1 for p in ignored if p.stat().st_size == 0)
        logger.warning("%s: ignored %d files that are not DICOM (no 'DICM' marker after the 128-byte preamble, "
                       "no .dcm suffix)%s, e.g. %s", rel_path(root, folder), len(ignored),
                       f", {empty} of them empty (0 bytes)" if empty else "",
                       ", ".join(rel_path(root, p) for p in ignored[:3]))
    return files


def _path_names_identity(relative_path: str, identity: str) -> bool:
    """Whether a file path relative to the dataset root contains the patient identifier (3+ characters)."""
    if len(identity) < 3:
        return False
    path = relative_path.lower()
    forms = {identity.lower(), identity.lower().replace("^", " "), identity.lower().replace("^", "_")}
    return any(form in path for form in forms)


def _consistent_series(infos: list[dict[str, Any]], root: Path, bad: BadFiles) -> list[dict[str, Any]]:
    """Keep the files of a series whose slice size is the most common one; report the others."""
    shapes = Counter(i["shape"] for i in infos)
    if len(shapes) == 1:
        return infos
    main_shape = shapes.most_common(1)[0][0]
    examples = {shape: next(rel_path(root, i["path"]) for i in infos if i["shape"] == shape) for shape in shapes}
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
