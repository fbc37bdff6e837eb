"""Built-in procedural phantoms: the default, download-free datasets of lungsynth.

:mod:`lungsynth.phantom.ct` generates synthetic chest CT volumes (COVID-like
ground-glass / consolidation lesions vs. lesion-free) and writes them as DICOM
series, NIfTI volumes and a ``labels.csv``; :mod:`lungsynth.phantom.lus` writes
lung-ultrasound clips as ``.mat`` files with a ``scores.csv``, and as videos.

The functions below say how a written phantom is read back: which folder below
the writer's ``out_dir`` the dataset reader reads, and with which reader
settings (:func:`lungsynth.data.readers.scan_dataset`). They follow the layouts
documented in :func:`~lungsynth.phantom.ct.write_phantom_ct` and
:func:`~lungsynth.phantom.lus.write_phantom_lus`. Where the writer's
``out_dir`` lies is the caller's choice. Nothing here imports the writers (they need
numpy and scipy): the workflow calls these while it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Dataset formats (``datasets.<name>.format``) that name a built-in phantom.
FORMATS = ("phantom_ct", "phantom_lus")
#: Classes of the CT phantom (its ``dicom/<class>/`` folders and ``labels.csv`` values).
CT_CLASSES: tuple[str, str] = ("covid", "noncovid")


def is_phantom(spec: Mapping[str, Any]) -> bool:
    """True when the dataset spec names a built-in phantom (it is written, not read from ``path``)."""
    return spec["format"] in FORMATS


def _check(spec: Mapping[str, Any]) -> str:
    fmt = spec["format"]
    if fmt not in FORMATS:
        raise ValueError(f"not a phantom format: {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def phantom_read_folder(spec: Mapping[str, Any]) -> str:
    """The folder, relative to the phantom writer's ``out_dir``, that the dataset reader reads.

    ``phantom_ct``: ``dicom`` or ``nifti`` (``read_as``); ``phantom_lus``: ``mat``.
    """
    if _check(spec) == "phantom_ct":
        return "nifti" if spec["read_as"] == "nifti" else "dicom"
    return "mat"


def phantom_reader_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The reader keys a phantom dataset is read with from :func:`phantom_read_folder`.

    ``format`` (the reader) and its options: the CT phantom as class folders of DICOM series
    (``dicom/<class>/``), or as NIfTI volumes with the class table one folder up
    (``labels.csv``); the LUS phantom as ``.mat`` clips with ``scores.csv`` beside them.
    Update a copy of the dataset spec with them.
    """
    if _check(spec) == "phantom_lus":
        return {"format": "lus_mat", "scores_csv": "scores.csv"}
    if spec["read_as"] == "nifti":
        return {"format": "nifti", "labels_csv": "../labels.csv"}
    return {"format": "dicom", "classes": {label: label for label in CT_CLASSES}}
