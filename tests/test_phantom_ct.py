"""Tests of the procedural chest CT phantom (lungsynth.phantom.ct)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage

from lungsynth.phantom import ct
from lungsynth.phantom.ct import CLASSES, PhantomVolume, generate_patient, write_phantom_ct
from lungsynth.data.volumes import nifti_to_stack

SIZE = 96
SLICES = 8


@pytest.fixture(scope="module")
def covid_volumes() -> list[PhantomVolume]:
    return [generate_patient(i, "covid", slices=SLICES, size=SIZE, seed=3) for i in range(6)]


@pytest.fixture(scope="module")
def noncovid_volumes() -> list[PhantomVolume]:
    return [generate_patient(i, "noncovid", slices=SLICES, size=SIZE, seed=3) for i in range(3)]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("phantom") / "ct"
    frame = write_phantom_ct(out, n_patients=4, covid_fraction=0.5, slices_per_patient=3, size=64, seed=11)
    return out, frame


# --------------------------------------------------------------------------- #
# generate_patient
# --------------------------------------------------------------------------- #


def test_shapes_dtypes_and_metadata() -> None:
    vol = generate_patient(7, "covid", slices=4, size=64, seed=0)
    assert vol.patient_id == "PH0007"
    assert vol.label == "covid"
    for arr, dtype in ((vol.hu, np.int16), (vol.lung_mask, np.uint8), (vol.infection_mask, np.uint8)):
        assert arr.shape == (4, 64, 64)
        assert arr.dtype == dtype
    assert len(vol.spacing_mm) == 3 and all(isinstance(v, float) and v > 0 for v in vol.spacing_mm)
    assert vol.hu.min() >= ct.HU_MIN and vol.hu.max() <= ct.HU_MAX
    assert set(np.unique(vol.lung_mask)) <= {0, 1}


@pytest.mark.parametrize("size,slices", [(32, 1), (64, 2)])
def test_small_sizes_work(size: int, slices: int) -> None:
    vol = generate_patient(0, "covid", slices=slices, size=size)
    assert vol.hu.shape == (slices, size, size)
    assert vol.lung_mask.any()


def test_deterministic() -> None:
    a = generate_patient(2, "covid", slices=3, size=64, seed=5)
    b = generate_patient(2, "covid", slices=3, size=64, seed=5)
    for name in ("hu", "lung_mask", "infection_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.spacing_mm == b.spacing_mm
    c = generate_patient(2, "covid", slices=3, size=64, seed=6)
    d = generate_patient(3, "covid", slices=3, size=64, seed=5)
    assert not np.array_equal(a.hu, c.hu)
    assert not np.array_equal(a.hu, d.hu)
    assert not np.array_equal(a.lung_mask, d.lung_mask)  # anatomy differs between patients


def test_class_changes_only_the_lesions() -> None:
    """Anatomy and noise depend on (seed, index) only: a classifier can only learn the lesions."""
    cov = generate_patient(4, "covid", slices=6, size=64, seed=1)
    non = generate_patient(4, "noncovid", slices=6, size=64, seed=1)
    np.testing.assert_array_equal(cov.lung_mask, non.lung_mask)
    assert cov.spacing_mm == non.spacing_mm
    assert cov.infection_mask.any() and not non.infection_mask.any()
    near = np.stack([ndimage.binary_dilation(m > 0, iterations=4) for m in cov.infection_mask])
    differs = cov.hu != non.hu
    assert differs.any()
    assert not (differs & ~near).any()


def test_tissue_hu_ranges(covid_volumes: list[PhantomVolume]) -> None:
    hu = np.stack([v.hu for v in covid_volumes])
    lung = np.stack([v.lung_mask for v in covid_volumes]).astype(bool)
    inf = np.stack([v.infection_mask for v in covid_volumes])
    assert -900 <= np.median(hu[lung & (inf == 0)]) <= -800
    assert -700 <= np.median(hu[inf == 1]) <= -300
    assert -100 <= np.median(hu[inf == 2]) <= 100
    for v in covid_volumes:  # per patient as well
        lv = v.lung_mask.astype(bool)
        assert -900 <= np.median(v.hu[lv & (v.infection_mask == 0)]) <= -800
        assert (v.hu > 300).sum() > 20  # ribs / vertebra
    corners = hu[..., :6, :6]  # anterior right corner: air outside the body
    assert abs(np.median(corners) + 1000) <= 10
    assert np.percentile(corners, 99) < -900


def test_anatomy_orientation(noncovid_volumes: list[PhantomVolume]) -> None:
    """Display orientation: spine posterior midline, heart towards the patient's left (image right)."""
    for v in noncovid_volumes:
        mid = v.hu[:, :, SIZE // 2 - 4 : SIZE // 2 + 4]
        bone_rows = np.nonzero((mid > 300).any(axis=(0, 2)))[0]
        assert bone_rows.size and np.median(bone_rows) > SIZE / 2  # vertebra: posterior
        lung = v.lung_mask.astype(bool)
        # lungs on both sides of the midline
        assert lung[..., : SIZE // 2].sum() > 0 and lung[..., SIZE // 2 :].sum() > 0
        # the heart (soft tissue in the anterior middle chest, above the domes) leans to image right
        s0 = v.hu[3, SIZE // 4 : SIZE // 2, SIZE // 4 : 3 * SIZE // 4]
        soft = (s0 > 0) & (s0 < 100)
        cols = np.nonzero(soft)[1]
        assert cols.mean() > s0.shape[1] / 2


def test_slices_vary_smoothly(noncovid_volumes: list[PhantomVolume]) -> None:
    for v in noncovid_volumes:
        m = v.lung_mask.astype(bool)
        for a, b in zip(m[:-1], m[1:]):
            dice = 2 * (a & b).sum() / (a.sum() + b.sum())
            assert dice > 0.5
        assert not np.array_equal(m[0], m[-1])


def test_infection_masks(covid_volumes: list[PhantomVolume], noncovid_volumes: list[PhantomVolume]) -> None:
    for v in covid_volumes + noncovid_volumes:
        assert set(np.unique(v.infection_mask)) <= {0, 1, 2}
        assert not (v.infection_mask[v.lung_mask == 0]).any()
    for v in noncovid_volumes:
        assert not v.infection_mask.any()
    per_slice = np.concatenate([(v.infection_mask > 0).any(axis=(1, 2)) for v in covid_volumes])
    assert 0.6 <= per_slice.mean() < 1.0  # most, but not all, COVID slices show lesions
    both = [(v.infection_mask == 1).any() and (v.infection_mask == 2).any() for v in covid_volumes]
    assert np.mean(both) >= 0.6
    # posterior predominance: lesions lie behind the centre of the lungs on average
    rows_lesion = np.concatenate([np.nonzero(v.infection_mask)[1] for v in covid_volumes])
    rows_lung = np.concatenate([np.nonzero(v.lung_mask)[1] for v in covid_volumes])
    assert rows_lesion.mean() > rows_lung.mean()


def test_generate_patient_bad_arguments() -> None:
    with pytest.raises(ValueError, match="label"):
        generate_patient(0, "flu")
    with pytest.raises(ValueError, match="slices"):
        generate_patient(0, "covid", slices=0)
    with pytest.raises(ValueError, match="size"):
        generate_patient(0, "covid", size=31)
    with pytest.raises(ValueError, match="seed"):
        generate_patient(0, "covid", seed=-1)
    with pytest.raises(ValueError, match="index"):
        generate_patient(-1, "covid")


# --------------------------------------------------------------------------- #
# write_phantom_ct
# --------------------------------------------------------------------------- #


def test_labels_csv(written: tuple[Path, pd.DataFrame]) -> None:
    out, frame = written
    assert list(frame.columns) == ["patient", "class"]
    assert list(frame["patient"]) == [f"PH{i:04d}" for i in range(4)]
    assert sorted(frame["class"]) == ["covid", "covid", "noncovid", "noncovid"]
    assert set(frame["class"]) <= set(CLASSES)
    on_disk = pd.read_csv(out / "labels.csv")
    pd.testing.assert_frame_equal(on_disk, frame)
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_dicom_round_trip(written: tuple[Path, pd.DataFrame]) -> None:
    out, frame = written
    any_unsorted = False
    for pid, label in zip(frame["patient"], frame["class"]):
        index = int(pid[2:])
        vol = generate_patient(index, label, slices=3, size=64, seed=11)
        files = sorted((out / "dicom" / label / pid).glob("*.dcm"))
        assert len(files) == 3
        datasets = [pydicom.dcmread(f) for f in files]
        instance_by_name = [int(ds.InstanceNumber) for ds in datasets]
        any_unsorted |= instance_by_name != sorted(instance_by_name)
        datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
        assert len(set(z)) == 3 and z == sorted(z)
        assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3]
        assert np.allclose(np.diff(z), vol.spacing_mm[2], atol=1e-3)
        for s, ds in enumerate(datasets):
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPClassUID == ct.CT_IMAGE_STORAGE
            assert ds.SOPClassUID == ct.CT_IMAGE_STORAGE
            assert ds.Modality == "CT"
            assert str(ds.PatientName) == f"Phantom^Patient{index:04d}"
            assert ds.PatientID == f"LSPH-11-{index:04d}"
            assert (ds.Rows, ds.Columns) == (64, 64)
            assert ds.BitsAllocated == 16 and ds.SamplesPerPixel == 1
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert tuple(float(v) for v in ds.PixelSpacing) == vol.spacing_mm[:2]
            assert float(ds.SliceThickness) == vol.spacing_mm[2]
            hu = ds.pixel_array.astype(np.int32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            np.testing.assert_array_equal(hu, vol.hu[s])
        uids = {ds.SOPInstanceUID for ds in datasets}
        assert len(uids) == 3
        assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert any_unsorted  # file names do not give the slice order


def test_nifti_round_trip(written: tuple[Path, pd.DataFrame]) -> None:
    out, frame = written
    for pid, label in zip(frame["patient"], frame["class"]):
        vol = generate_patient(int(pid[2:]), label, slices=3, size=64, seed=11)
        for folder, arr in (("images", vol.hu), ("lung_masks", vol.lung_mask), ("infection_masks", vol.infection_mask)):
            image = nib.load(out / "nifti" / folder / f"{pid}.nii.gz")
            stack = nifti_to_stack(image)
            assert stack.dtype == arr.dtype
            np.testing.assert_array_equal(stack, arr)
            assert np.allclose(image.header.get_zooms()[:3], (vol.spacing_mm[1], vol.spacing_mm[0], vol.spacing_mm[2]))


def test_written_files_are_bit_identical(tmp_path: Path) -> None:
    kwargs = dict(n_patients=2, slices_per_patient=2, size=48, seed=4)
    write_phantom_ct(tmp_path / "a", **kwargs)
    write_phantom_ct(tmp_path / "b", **kwargs)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 * 2 + 3 * 2 + 1
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_class_counts_and_clamping(tmp_path: Path) -> None:
    assert ct._class_order(24, 0.5, 0).count("covid") == 12
    assert ct._class_order(10, 0.3, 0).count("covid") == 3
    assert ct._class_order(2, 0.01, 0).count("covid") == 1  # both classes always present
    assert ct._class_order(3, 0.99, 0).count("noncovid") == 1
    order = ct._class_order(24, 0.5, 0)
    assert order != sorted(order)  # interleaved
    assert order == ct._class_order(24, 0.5, 0)


def test_overwrite_replaces_old_output(tmp_path: Path) -> None:
    out = tmp_path / "ct"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    write_phantom_ct(out, n_patients=2, slices_per_patient=1, size=32, progress=True)
    assert not (out / "stale.txt").exists()
    assert (out / "labels.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct"]


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = ct._write_nifti

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # second patient, after its DICOM files were written
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(ct, "_write_nifti", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        write_phantom_ct(tmp_path / "ct", n_patients=3, slices_per_patient=1, size=32)
    assert list(tmp_path.iterdir()) == []

    # an existing, complete output survives a failed rewrite untouched
    monkeypatch.setattr(ct, "_write_nifti", real)
    write_phantom_ct(tmp_path / "ct", n_patients=2, slices_per_patient=1, size=32, seed=1)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    calls["n"] = 0
    monkeypatch.setattr(ct, "_write_nifti", flaky)
    with pytest.raises(RuntimeError):
        write_phantom_ct(tmp_path / "ct", n_patients=3, slices_per_patient=1, size=32, seed=2)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n_patients": 1}, "n_patients"),
        ({"n_patients": 2.5}, "n_patients"),
        ({"covid_fraction": 0.0}, "covid_fraction"),
        ({"covid_fraction": 1.0}, "covid_fraction"),
        ({"covid_fraction": float("nan")}, "covid_fraction"),
        ({"slices_per_patient": 0}, "slices_per_patient"),
        ({"size": 16}, "size"),
        ({"seed": -3}, "seed"),
    ],
)
def test_write_bad_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        write_phantom_ct(tmp_path / "ct", **kwargs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- #
# lungsynth.phantom: how the workflow reads a written phantom back
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("read_as", ["dicom", "nifti"])
def test_read_folder_and_reader_settings_read_what_the_writer_wrote(written: tuple[Path, pd.DataFrame],
                                                                    read_as: str) -> None:
    from lungsynth.data.readers import scan_dataset
    from lungsynth.phantom import is_phantom, phantom_read_folder, phantom_reader_settings

    out, frame = written
    spec = {"format": "phantom_ct", "read_as": read_as}
    assert is_phantom(spec)
    settings = phantom_reader_settings(spec)
    assert settings["format"] == read_as
    records, skipped = scan_dataset(out / phantom_read_folder(spec), {**spec, **settings})
    assert skipped == []
    slices = 3  # the `written` fixture's slices_per_patient
    assert len(records) == slices * len(frame)
    per_class = frame["class"].value_counts().to_dict()
    assert pd.Series([r["class"] for r in records]).value_counts().to_dict() == {c: slices * n for c, n in per_class.items()}
    if read_as == "nifti":  # the masks the conditional GANs need come with every slice; classes from labels.csv
        assert all(r["mask"] and r["lung_mask"] for r in records)
        assert {r["patient"]: r["class"] for r in records} == dict(zip(frame["patient"], frame["class"]))


def test_phantom_layout_functions_reject_other_formats() -> None:
    from lungsynth.phantom import is_phantom, phantom_read_folder, phantom_reader_settings

    assert not is_phantom({"format": "dicom"})
    with pytest.raises(ValueError, match="not a phantom format"):
        phantom_read_folder({"format": "nifti"})
    with pytest.raises(ValueError, match="not a phantom format"):
        phantom_reader_settings({"format": "image_folder"})
