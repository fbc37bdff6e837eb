"""Atomic file writing: an artifact is either complete or absent.

Every artifact lungsynth writes goes through :func:`atomic_path`, which yields
a temporary path in the destination folder and renames it over the target only
when the block finished without an exception. A killed or failed job therefore
never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it to ``target`` on success.

    ``suffix`` defaults to the target's own suffixes so that libraries which pick
    a format from the file name (PIL, nibabel, torch) behave as for the target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(target: str | Path, frame: "Any") -> None:
    """Write a pandas DataFrame to ``target`` atomically, without the index."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)


def torch_save(target: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``target`` atomically."""
    import torch

    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


def torch_load(path: str | Path) -> Any:
    """Load a file written by :func:`torch_save` with ``weights_only=True``."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def atomic_folder(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of ``out_dir``; on success rename it onto ``out_dir``.

    An old ``out_dir`` is replaced (and removed afterwards); on an exception the temporary folder is
    removed and ``out_dir`` is left as it was. ``out_dir`` must name a folder (not ``.`` or ``..``).
    """
    out_dir = Path(out_dir)
    if out_dir.name in ("", ".", ".."):
        raise ValueError(f"out_dir must name a folder to (re)create, got {str(out_dir)!r}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` folder onto ``out_dir``, replacing an old one."""
    if not out_dir.exists() and not out_dir.is_symlink():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rmdir(old)
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()
