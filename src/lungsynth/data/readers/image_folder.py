"""2-D image folders: class subfolders of PNG/JPG/... images, and image folders paired with label-mask folders.

* ``image_folder`` (COVID-CT layout): ``<root>/<class subfolder>/**/<image>``,
  one class per subfolder, images .png .jpg .jpeg .bmp .tif .tiff (any case)
  found recursively; no masks.
* ``paired_folder`` (COVID-SemiSeg layout): ``<root>/Imgs/**/<image>`` and
  ``<root>/GT/**/<mask>`` with the same path stem; masks are palette/grayscale
  images of label indices (0 background, 1 ground-glass, 2 consolidation by
  default) of the image's size; one class for all.

Unit ``8bit``: pixels 0..255 as decoded by PIL (16-bit gray scaled by 1/257,
see :func:`lungsynth.data.readers.load_image`); slice 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from lungsynth.data.readers.common import (
    DEFAULT_MASK_LABELS,
    BadFiles,
    Record,
    Skipped,
    check_classes,
    check_mask_labels,
    check_unique_ids,
    class_folder,
    compile_patient_regex,
    empty_class,
    list_files,
    make_record,
    read_8bit,
    read_label_image,
    rel_path,
    sanitize_id,
)
from lungsynth.errors import ConfigError, InputDataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def _strip_suffix(rel: PurePosixPath | Path) -> str:
    """POSIX path without its image suffix (``a/b.png`` -> ``a/b``)."""
    return rel.with_suffix("").as_posix()


def _patient_of(stem: str, own: str, pattern: re.Pattern[str] | None) -> str:
    """Patient of a 2-D image: the regex group searched in ``stem``, else ``own``."""
    if pattern is not None:
        match = pattern.search(stem)
        if match is not None and match.group("patient"):
            return match.group("patient")
    return own


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
    :func:`~lungsynth.data.readers.common.list_files` (links into the dataset are not followed, links out
    of it only with ``follow_links_outside``; a file in two classes is an error).
    """
    root = Path(root)
    classes = check_classes(classes)
    pattern = compile_patient_regex(patient_regex)
    bad = BadFiles(root, on_bad_file)
    records: list[Record] = []
    seen: dict[tuple[int, int], Path] = {}
    for cls, sub in classes.items():
        folder = class_folder(root, cls, sub)
        bad.cls = cls
        files = list_files(folder, IMAGE_SUFFIXES, root=root, follow_links_outside=follow_links_outside, seen=seen)
        if not files:
            raise empty_class(cls, folder, f"has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        n_before = len(records)
        for path in files:
            try:
                read_8bit(path)
            except InputDataError as err:
                bad.report(err)
                continue
            inner = _strip_suffix(path.relative_to(folder))
            records.append(make_record(
                id=sanitize_id(inner), patient=_patient_of(path.stem, inner, pattern), cls=cls,
                fmt="image_folder", unit="8bit", source=rel_path(root, path),
            ))
        if len(records) == n_before:
            raise empty_class(cls, folder, f"has no readable image files (all {len(files)} were bad)")
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
    :func:`~lungsynth.data.readers.common.list_files`.
    """
    root = Path(root)
    pattern = compile_patient_regex(patient_regex)
    allowed = check_mask_labels(mask_labels)
    if not isinstance(default_class, str) or not default_class:
        raise ConfigError(f"default_class must be a non-empty class name, got {default_class!r}")
    bad = BadFiles(root, on_bad_file)
    bad.cls = default_class
    links = {"root": root, "follow_links_outside": follow_links_outside}
    image_dir = class_folder(root, default_class, images)
    mask_dir = root / masks
    if not mask_dir.is_dir():
        raise InputDataError(mask_dir, "mask folder is missing", f"add the masks or set paired.masks (now {masks!r})")
    mask_index: dict[str, list[Path]] = {}
    for path in list_files(mask_dir, IMAGE_SUFFIXES, **links):
        mask_index.setdefault(_strip_suffix(path.relative_to(mask_dir)), []).append(path)
    files = list_files(image_dir, IMAGE_SUFFIXES, **links)
    if not files:
        raise empty_class(default_class, image_dir, "has no image files")
    records: list[Record] = []
    used: set[str] = set()
    for path in files:
        inner = _strip_suffix(path.relative_to(image_dir))
        used.add(inner)
        candidates = mask_index.get(inner, [])
        if len(candidates) != 1:
            problem = (f"no mask with the same name in {masks}/" if not candidates else
                       f"several masks match: {', '.join(rel_path(root, c) for c in candidates)}")
            bad.report(InputDataError(path, problem, "add exactly one mask per image (same file stem)"))
            continue
        mask_path = candidates[0]
        try:
            image = read_8bit(path)
        except InputDataError as err:
            bad.report(err, also=rel_path(root, mask_path))
            continue
        try:
            mask = read_label_image(mask_path, allowed)
            if mask.shape != image.shape[:2]:
                raise InputDataError(
                    mask_path,
                    f"mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image {rel_path(root, path)} "
                    f"size {image.shape[1]}x{image.shape[0]}",
                    "resample the mask to the image grid (nearest neighbour) or fix the pairing",
                )
        except InputDataError as err:
            bad.report(err, also=rel_path(root, path))
            continue
        records.append(make_record(
            id=sanitize_id(inner), patient=_patient_of(path.stem, inner, pattern), cls=default_class,
            fmt="paired_folder", unit="8bit", source=rel_path(root, path), mask=rel_path(root, mask_path),
        ))
    orphans = sorted(set(mask_index) - used)
    if orphans:
        logger.warning("%d masks in %s have no image (ignored), e.g. %s", len(orphans), mask_dir, orphans[0])
    if not records:
        raise empty_class(default_class, image_dir, f"has no readable image/mask pairs (all {len(files)} were bad)")
    check_unique_ids(records, root)
    return records, bad.skipped
