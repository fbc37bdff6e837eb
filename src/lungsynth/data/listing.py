"""Content listing of a dataset folder, cheap enough to compute at every Snakemake start.

The ``ingest`` rule passes :func:`dataset_fingerprint` as a param, so Snakemake
(which reruns a job whose params changed since its last run) reruns ingest, and
everything downstream of it, exactly when the files a reader could read
change. :func:`named_files` lists the files a spec names explicitly (labels
CSV, scores CSV, split lists) so that they can be plain rule inputs as well.

Standard library only: the workflow imports this module while it builds the
DAG, i.e. at every Snakemake start, including every cluster job.

The rule
--------
The fingerprint digests one entry per item below, sorted:

* every non-hidden regular file below the dataset root (``path``), as its
  POSIX path relative to the root, its size and its ``st_mtime_ns``; a file
  symlink is stat-ed through the link and also records its resolved target;
* the folders the spec names below the root (``classes`` values, ``nifti.*``
  and ``paired.*`` folder names) walked the same way, which matters only when
  they lie outside the root (``../other`` or a link out of it); they are
  labelled with the path as configured;
* the files the spec names, which may lie outside the root (paths relative to
  the root): ``labels_csv``, ``scores_csv``, every file of ``split_lists``
  (split -> list of paths or a single path), and for ``lus_video`` every video
  path listed in the labels CSV (``path_column``); a missing one is recorded
  as missing, so creating it changes the fingerprint.

The walk skips hidden entries (names starting with ``.``, as the readers do),
follows a directory symlink only when its resolved target lies inside the
root (or inside the named folder being walked), or anywhere when the spec sets
``follow_links_outside: true`` (the readers then read through such links), and
enters each directory at most once (tracked by ``(st_dev, st_ino)``), so a
link loop such as ``CT_COVID/loop -> ..`` ends. A directory link that is not followed (target
outside, or already visited), a broken link and an unreadable folder are each
recorded as an entry of their own (name and target), so creating, retargeting
or removing them changes the fingerprint too. Folders in ``exclude`` (the
workflow's own ``results/`` when a dataset root contains the working
directory) are skipped without an entry.

This lists a superset of what any reader reads (files of every suffix, the
whole root rather than only the class folders): a spurious rerun is safe, a
missed change is not. A change that keeps a file's size and mtime (a
same-size edit that restores the old mtime) is not seen, as with Snakemake's
own mtime checks.
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

Entry = tuple[str, ...]

_FOLDER_DEFAULTS: dict[str, dict[str, str]] = {
    "nifti": {"images": "images", "lung_masks": "lung_masks", "infection_masks": "infection_masks"},
    "paired": {"images": "Imgs", "masks": "GT"},
}


def _join(root: str, rel: str) -> str:
    return os.path.join(root, rel.replace("\\", "/"))


def is_within(path: str, base: str) -> bool:
    """Whether resolved ``path`` is ``base`` or lies below it (both resolved); the readers use it too."""
    try:
        return os.path.commonpath([path, base]) == base
    except ValueError:  # different drives
        return False


def _is_inside(target: str, bases: Iterable[str]) -> bool:
    return any(is_within(target, base) for base in bases)


def _split_list_paths(split_lists: Any) -> list[str]:
    """Every list file of ``split_lists`` (split -> list of paths, or one path)."""
    if not isinstance(split_lists, Mapping):
        return []
    paths: list[str] = []
    for files in split_lists.values():
        if isinstance(files, str):
            paths.append(files)
        elif isinstance(files, Iterable):
            paths.extend(str(f) for f in files if f)
    return paths


def _named_paths(spec: Mapping[str, Any]) -> list[str]:
    """Paths (relative to the root, as configured) of the files ``spec`` names."""
    fmt = spec.get("format")
    names: list[str] = []
    labels = spec.get("labels_csv") or ("labels.csv" if fmt == "lus_video" else None)
    scores = spec.get("scores_csv") or ("scores.csv" if fmt == "lus_mat" else None)
    for value in (labels, scores):
        if isinstance(value, str) and value:
            names.append(value)
    names.extend(_split_list_paths(spec.get("split_lists")))
    return list(dict.fromkeys(names))


def _named_folders(spec: Mapping[str, Any]) -> list[str]:
    """Folders (relative to the root) a reader may walk: class folders and nifti/paired folders.

    Taken from every format's keys (a superset): a folder inside the root is
    walked with the root anyway, a missing one adds a constant entry.
    """
    folders: list[str] = []
    classes = spec.get("classes")
    if isinstance(classes, Mapping):
        folders.extend(v for v in classes.values() if isinstance(v, str) and v)
    for key, defaults in _FOLDER_DEFAULTS.items():
        sub = spec.get(key)
        sub = sub if isinstance(sub, Mapping) else {}
        folders.extend(str(sub.get(name) or default) for name, default in defaults.items())
    return list(dict.fromkeys(f.replace("\\", "/").rstrip("/") for f in folders))


def named_files(root: str | os.PathLike[str], spec: Mapping[str, Any]) -> list[str]:
    """The files ``spec`` names explicitly that exist (as ``root/<path>`` strings), for rule inputs.

    ``labels_csv``, ``scores_csv`` and every file of ``split_lists``, paths
    relative to ``root``; missing ones are left out (the reader reports them;
    :func:`dataset_fingerprint` records them as missing).
    """
    root = os.fspath(root)
    return [_join(root, rel) for rel in _named_paths(spec) if os.path.isfile(_join(root, rel))]


def _stat_entry(kind: str, label: str, path: str) -> Entry:
    """``(kind, label, size, mtime_ns[, target])`` of one file, or why there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (kind, label, "missing")
    except OSError as exc:
        return (kind, label, "unreadable", type(exc).__name__)
    if not stat.S_ISREG(st.st_mode):
        return (kind, label, "not-a-file")
    entry: Entry = (kind, label, str(st.st_size), str(st.st_mtime_ns))
    return entry + (os.path.realpath(path),) if os.path.islink(path) else entry


def _walk(top: str, prefix: str, root_real: str, visited: set[tuple[int, int]],
          excluded: set[tuple[int, int]], entries: list[Entry], follow_outside: bool = False) -> None:
    """Add the entries of the tree at ``top`` to ``entries``, paths labelled ``prefix + relative path``."""
    try:
        st = os.stat(top)
    except FileNotFoundError:
        entries.append(("folder", prefix, "missing"))
        return
    except OSError as exc:
        entries.append(("folder", prefix, "unreadable", type(exc).__name__))
        return
    if not stat.S_ISDIR(st.st_mode):
        entries.append(("folder", prefix, "not-a-folder"))
        return
    key = (st.st_dev, st.st_ino)
    if key in visited or key in excluded:
        return
    visited.add(key)
    bases = tuple(dict.fromkeys((root_real, os.path.realpath(top))))
    stack = [(top, prefix)]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as scan:
                items = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            entries.append(("folder", rel, "unreadable", type(exc).__name__))
            continue
        subfolders = []
        for item in items:
            if item.name.startswith("."):
                continue
            name = rel + item.name
            try:
                is_link = item.is_symlink()
                st = item.stat()  # through the link
            except OSError:
                try:
                    target = os.readlink(item.path)
                except OSError:
                    target = ""
                entries.append(("broken-link", name, target))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in excluded:
                    continue
                target = os.path.realpath(item.path) if is_link else ""
                if is_link and not follow_outside and not _is_inside(target, bases):
                    entries.append(("link-outside", name + "/", target))
                elif key in visited:
                    entries.append(("seen", name + "/", target))
                else:
                    visited.add(key)
                    subfolders.append((item.path, name + "/"))
            elif stat.S_ISREG(st.st_mode):
                entry: Entry = ("file", name, str(st.st_size), str(st.st_mtime_ns))
                entries.append(entry + (os.path.realpath(item.path),) if is_link else entry)
        stack.extend(reversed(subfolders))


def _listed_videos(root: str, spec: Mapping[str, Any]) -> list[str]:
    """Video paths in the ``path_column`` of a ``lus_video`` labels CSV ([] when unreadable)."""
    column = spec.get("path_column") or "path"
    try:
        with open(_join(root, spec.get("labels_csv") or "labels.csv"), newline="", encoding="utf-8-sig") as f:
            return sorted({(row.get(column) or "").strip().replace("\\", "/") for row in csv.DictReader(f)} - {""})
    except (OSError, csv.Error, UnicodeDecodeError):
        return []  # the CSV's own entry changes when it becomes readable


def dataset_entries(root: str | os.PathLike[str], spec: Mapping[str, Any],
                    exclude: Iterable[str | os.PathLike[str]] = ()) -> list[Entry]:
    """The sorted entries :func:`dataset_fingerprint` digests (the rule: module docstring).

    Each is ``(kind, path, ...)``: ``("file", path, size, mtime_ns[, link target])``
    for a file found by the walk, ``("named", path, size, mtime_ns[, target])``
    or ``("named", path, "missing")`` for a file the spec names, and
    ``"link-outside"``, ``"seen"``, ``"broken-link"``, ``"folder"`` entries for
    links not followed and folders missing or unreadable. Paths are relative
    to ``root`` (POSIX), as configured for named files and folders.
    """
    root = os.fspath(root)
    excluded: set[tuple[int, int]] = set()
    for path in exclude:
        try:
            st = os.stat(path)
        except OSError:
            continue
        excluded.add((st.st_dev, st.st_ino))
    visited: set[tuple[int, int]] = set()
    entries: list[Entry] = []
    root_real = os.path.realpath(root)
    follow_outside = spec.get("follow_links_outside") is True
    _walk(root, "", root_real, visited, excluded, entries, follow_outside)
    for rel in _named_folders(spec):
        _walk(_join(root, rel), rel + "/", root_real, visited, excluded, entries, follow_outside)
    named = _named_paths(spec)
    if spec.get("format") == "lus_video":
        named += _listed_videos(root, spec)
    entries.extend(_stat_entry("named", rel, _join(root, rel)) for rel in dict.fromkeys(named))
    return sorted(set(entries))


def dataset_fingerprint(root: str | os.PathLike[str], spec: Mapping[str, Any],
                        exclude: Iterable[str | os.PathLike[str]] = ()) -> str:
    """Digest of the content listing of the dataset at ``root`` described by ``spec``.

    Changes whenever a file a reader of ``spec`` could read is added, removed,
    renamed, or changes size or mtime (the rule: module docstring).
    ``exclude``: folders to leave out (e.g. the workflow's ``results``).
    Returns ``"<n> files, <bytes> bytes, sha256 <hex>"`` (files and bytes
    found by the walk, for people reading ``snakemake -n``).
    """
    digest = hashlib.sha256()
    n_files = n_bytes = 0
    for entry in dataset_entries(root, spec, exclude):
        digest.update("\0".join(entry).encode("utf-8", "surrogateescape") + b"\n")
        if entry[0] == "file":
            n_files += 1
            n_bytes += int(entry[2])
    return f"{n_files} files, {n_bytes} bytes, sha256 {digest.hexdigest()}"
