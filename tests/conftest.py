"""Shared pytest fixtures: real-data location and small synthetic input files.

The writer fixtures return factories so that each test builds exactly the
files it needs under its own ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

DEFAULT_REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"

# Identifying strings written into synthetic DICOM headers; no artifact may contain them.
SECRET_PATIENT_ID = "PID-SECRET-4711"
SECRET_PATIENT_NAME = "Doe^Jane"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small convolutions run several times faster on one intra-op thread on a busy 2-core machine.

    Modules of small-network tests use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """``../shared/realdata`` (or ``$LUNGSYNTH_REALDATA``); skips the test when absent."""
    path = Path(os.environ.get("LUNGSYNTH_REALDATA", DEFAULT_REALDATA))
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set LUNGSYNTH_REALDATA to its folder to run this test)")
    return path


@pytest.fixture(scope="session")
def dicom_identity() -> tuple[str, str]:
    """``(PatientID, PatientName)`` that ``write_dicom``/``write_dicom_series`` put in headers by default."""
    return SECRET_PATIENT_ID, SECRET_PATIENT_NAME


@pytest.fixture(scope="session")
def ct_small_path() -> Path:
    """pydicom's bundled real CT slice (128x128, about -896..1167 HU after rescale)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def _write_image(path: Path, mode: str = "L", size: tuple[int, int] = (24, 20), seed: int = 0) -> Path:
    """Write a random image of PIL ``mode`` and ``size`` (W, H); the format follows the suffix."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    if mode == "L":
        image = Image.fromarray(gray)
    elif mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)  # mode I;16
    elif mode == "RGB":
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    elif mode == "RGBA":
        image = Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)]))
    elif mode == "P":
        image = Image.fromarray(gray % 4)
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    else:
        raise ValueError(mode)
    assert image.mode == mode, (image.mode, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _write_label_png(path: Path, labels: np.ndarray, palette: bool = True) -> Path:
    """Write a uint8 label map as a palette (P) or grayscale (L) PNG."""
    from PIL import Image

    image = Image.fromarray(labels.astype(np.uint8))
    if palette:  # putpalette turns the L image into P
        image.putpalette([0, 0, 0, 255, 255, 0, 255, 0, 0] + [0] * (256 * 3 - 9))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    z: float,
    instance: int,
    series_uid: str,
    study_uid: str,
    patient_id: str = SECRET_PATIENT_ID,
    patient_name: str = SECRET_PATIENT_NAME,
    slope: float = 1.0,
    intercept: float = -1024.0,
    iop: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
) -> Path:
    """Write one single-frame int16 CT slice at ``ImagePositionPatient = (0, 0, z)``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    sop_uid = generate_uid(entropy_srcs=[series_uid, str(z), str(instance)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = list(iop)
    ds.PixelSpacing = [0.8, 0.8]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = stored.astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _write_dicom_series(
    folder: Path,
    n_slices: int = 4,
    shape: tuple[int, int] = (16, 16),
    *,
    tag: str = "a",
    seed: int = 0,
    **kwargs,
) -> list[tuple[Path, float]]:
    """Write a series whose file names and InstanceNumbers are shuffled against position.

    Slice at position rank ``r`` (z = -40 + 2.5 r, increasing) has stored value
    ``100 * (r + 1)`` everywhere. Returns ``(path, z)`` in position order.
    """
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    series_uid = generate_uid(entropy_srcs=[str(folder), tag, "series"])
    study_uid = generate_uid(entropy_srcs=[str(folder), tag, "study"])
    names = rng.permutation(n_slices)
    instances = rng.permutation(n_slices) + 1
    written = []
    for rank in range(n_slices):
        z = -40.0 + 2.5 * rank
        stored = np.full(shape, 100 * (rank + 1), dtype=np.int16)
        path = folder / f"img{names[rank]:03d}.dcm"
        _write_dicom(path, stored, z=z, instance=int(instances[rank]), series_uid=series_uid,
                     study_uid=study_uid, **kwargs)
        written.append((path, z))
    return written


def _write_nifti_case(
    root: Path,
    case: str,
    stack: np.ndarray,
    *,
    lung: np.ndarray | None = None,
    infection: np.ndarray | None = None,
    suffix: str = ".nii.gz",
) -> Path:
    """Write ``images/<case>`` (and masks) from ``(S, H, W)`` display stacks via ``stack_to_nifti``."""
    import nibabel as nib

    from lungsynth.data.volumes import stack_to_nifti

    spacing = (0.8, 0.8, 2.5)
    for folder, data in (("images", stack), ("lung_masks", lung), ("infection_masks", infection)):
        if data is not None:
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(stack_to_nifti(data, spacing), root / folder / f"{case}{suffix}")
    return root / "images" / f"{case}{suffix}"


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Factory ``(path, mode="L", size=(W, H), seed=0) -> path`` (modes L, I;16, RGB, RGBA, P)."""
    return _write_image


@pytest.fixture
def write_label_png() -> Callable[..., Path]:
    """Factory ``(path, labels uint8 (H, W), palette=True) -> path``."""
    return _write_label_png


@pytest.fixture
def write_dicom() -> Callable[..., Path]:
    """Factory writing one int16 CT slice (see ``_write_dicom``)."""
    return _write_dicom


@pytest.fixture
def write_dicom_series() -> Callable[..., list[tuple[Path, float]]]:
    """Factory ``(folder, n_slices=4, shape=(16, 16), tag=..., seed=..., **header) -> [(path, z)]``."""
    return _write_dicom_series


@pytest.fixture
def write_nifti_case() -> Callable[..., Path]:
    """Factory ``(root, case, stack, lung=None, infection=None, suffix=".nii.gz") -> image path``."""
    return _write_nifti_case


@pytest.fixture
def image_folder_root(tmp_path: Path) -> Path:
    """Two classes ``covid`` (CT_COVID) / ``noncovid`` (CT_NonCOVID), mixed modes and suffixes.

    covid: 3 patients ``pA``, ``pB``, ``pC`` x 2 slices named ``<patient>%<k>``;
    noncovid: 4 single-slice patients ``1`` .. ``4``. 10 files in all.
    """
    root = tmp_path / "ds"
    modes = ["L", "RGB", "RGBA", "P", "I;16", "L"]
    i = 0
    for patient in ("pA", "pB", "pC"):
        for k in range(2):
            _write_image(root / "CT_COVID" / f"{patient}%{k}.png", modes[i % len(modes)], (20 + i, 16), seed=i)
            i += 1
    for n in range(1, 5):
        suffix = ".jpg" if n % 2 else ".png"
        _write_image(root / "CT_NonCOVID" / f"{n}{suffix}", "RGB" if n == 1 else "L", (18, 18 + n), seed=10 + n)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete local run of ``tests/configs/tiny.yaml`` (about 4 minutes on 2 cores), shared by the
    end-to-end tests. Tests that change it put it back to the tiny config before they end."""
    from wfutil import snakemake

    workdir = tmp_path_factory.mktemp("tiny_run")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
