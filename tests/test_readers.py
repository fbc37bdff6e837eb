"""Readers: happy paths of every layout and detection of every class of bad input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.data.readers import (
    RECORD_COLUMNS,
    load_image,
    load_mask,
    scan_dataset,
    scan_dicom,
    scan_image_folder,
    scan_nifti,
    scan_paired_folder,
)

CLASSES = {"covid": "CT_COVID", "noncovid": "CT_NonCOVID"}
REGEX = r"^(?P<patient>.+?)(%\d+)?$"


@pytest.fixture
def w(write_image, write_label_png, write_dicom, write_dicom_series, write_nifti_case):
    return SimpleNamespace(image=write_image, label=write_label_png, dicom=write_dicom,
                           series=write_dicom_series, nifti=write_nifti_case)


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _by_source(records):
    return {r["source"]: r for r in records}


# --------------------------------------------------------------------------- image folder


def test_image_folder_happy_path(image_folder_root):
    root = image_folder_root
    (root / "CT_COVID" / ".DS_Store").write_bytes(b"\0junk")
    (root / "CT_COVID" / "._pA%0.png").write_bytes(b"\0junk")  # macOS resource fork: ignored
    records, skipped = scan_image_folder(root, CLASSES, patient_regex=REGEX)
    assert skipped == []
    assert len(records) == 10
    assert all(list(r) == list(RECORD_COLUMNS) for r in records)
    assert {r["class"] for r in records} == {"covid", "noncovid"}
    assert all(r["unit"] == "8bit" and r["format"] == "image_folder" and r["slice"] == 0 for r in records)
    assert all(r["mask"] == "" and r["lung_mask"] == "" for r in records)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", r["id"]) for r in records)
    by = _by_source(records)
    assert by["CT_COVID/pA%1.png"]["id"] == "pA_1"
    assert by["CT_COVID/pA%1.png"]["patient"] == "pA"
    assert by["CT_NonCOVID/3.jpg"]["patient"] == "3"
    assert {r["patient"] for r in records} == {"pA", "pB", "pC", "1", "2", "3", "4"}
    # without a regex every file is its own patient; ids are stable across runs
    again, _ = scan_image_folder(root, CLASSES)
    assert len({r["patient"] for r in again}) == 10
    assert [r["id"] for r in again] == [r["id"] for r in records]


@pytest.mark.parametrize(
    ("mode", "channels"), [("L", 1), ("I;16", 1), ("RGB", 3), ("RGBA", 3), ("P", 3)]
)
def test_load_image_modes(tmp_path, w, mode, channels):
    path = w.image(tmp_path / "c" / "x.png", mode, (13, 9), seed=3)
    row = {"format": "image_folder", "unit": "8bit", "source": "c/x.png", "slice": 0, "mask": ""}
    image = load_image(tmp_path, pd.Series(row))
    assert image.dtype == np.float32 and image.shape == (9, 13, channels)
    assert image.min() >= 0 and image.max() <= 255
    if mode in ("L", "I;16"):
        gray = np.random.default_rng(3).integers(0, 256, (9, 13), dtype=np.uint8)
        np.testing.assert_array_equal(image[..., 0], gray.astype(np.float32))
    assert load_mask(tmp_path, row) is None
    assert load_mask(tmp_path, {**row, "mask": float("nan")}) is None  # empty CSV cell read by pandas
    assert path.exists()


def test_image_folder_duplicate_ids(image_folder_root):
    root = image_folder_root
    shutil.copy(root / "CT_NonCOVID" / "2.png", root / "CT_NonCOVID" / "2.jpg")
    for mode in ("error", "skip"):
        with pytest.raises(InputDataError, match=r"duplicate") as info:
            scan_image_folder(root, CLASSES, on_bad_file=mode)
        assert "CT_NonCOVID/2.png" in str(info.value) and "CT_NonCOVID/2.jpg" in str(info.value)


@pytest.mark.parametrize("mode", ["error", "skip"])
@pytest.mark.parametrize("problem", ["missing", "no files", "all bad"])
def test_empty_class_is_always_an_error(image_folder_root, mode, problem):
    root = image_folder_root
    folder = root / "CT_NonCOVID"
    if problem == "missing":
        shutil.rmtree(folder)
    elif problem == "no files":
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "notes.txt").write_text("no images here")
    else:
        for path in folder.iterdir():
            _truncate(path, 0.3)
        if mode == "error":  # the first bad file stops the scan before the class is found empty
            with pytest.raises(InputDataError, match=r"1\.jpg: cannot decode"):
                scan_image_folder(root, CLASSES, on_bad_file=mode)
            return
    with pytest.raises(InputDataError, match="add images or remove the class from the config") as info:
        scan_image_folder(root, CLASSES, on_bad_file=mode)
    assert "noncovid" in str(info.value) and "CT_NonCOVID" in str(info.value)


def test_empty_class_other_readers(tmp_path, w):
    (tmp_path / "covid").mkdir()
    with pytest.raises(InputDataError, match="add images or remove the class"):
        scan_dicom(tmp_path, {"covid": "covid"}, on_bad_file="skip")
    w.series(tmp_path / "covid" / "s1", 2)
    with pytest.raises(InputDataError, match="add images or remove the class"):
        scan_dicom(tmp_path, {"covid": "covid", "noncovid": "noncovid"}, on_bad_file="skip")
    paired = tmp_path / "paired"
    w.image(paired / "Imgs" / "a.jpg", "L", (8, 8))
    (paired / "GT").mkdir()
    with pytest.raises(InputDataError, match="add images or remove the class"):
        scan_paired_folder(paired, on_bad_file="skip")  # the only image has no mask


# --------------------------------------------------------------------------- paired folder


def test_paired_folder_happy_path(tmp_path, w):
    root = tmp_path / "semiseg"
    labels = np.zeros((10, 12), np.uint8)
    labels[2:5, 3:6] = 1
    labels[6:8, 1:9] = 2
    for i, (mode, palette) in enumerate([("L", True), ("RGB", False), ("L", True)]):
        w.image(root / "Imgs" / f"{i}.jpg", mode, (12, 10), seed=i)
        w.label(root / "GT" / f"{i}.png", np.roll(labels, i, axis=1), palette=palette)
    w.label(root / "GT" / "99.png", labels)  # orphan mask: ignored
    records, skipped = scan_paired_folder(root)
    assert skipped == [] and len(records) == 3
    rec = _by_source(records)["Imgs/1.jpg"]
    assert rec["mask"] == "GT/1.png" and rec["lung_mask"] == "" and rec["class"] == "covid"
    assert rec["format"] == "paired_folder" and rec["unit"] == "8bit"
    mask = load_mask(root, rec)
    assert mask.dtype == np.uint8 and mask.shape == (10, 12)
    np.testing.assert_array_equal(mask, np.roll(labels, 1, axis=1))
    assert load_image(root, rec).shape == (10, 12, 3)
    assert load_mask(root, rec, "lung_mask") is None
    assert scan_dataset(root, {"format": "paired_folder", "default_class": "ggo"})[0][0]["class"] == "ggo"


# --------------------------------------------------------------------------- DICOM


def test_dicom_ct_small_hu(tmp_path, ct_small_path):
    shutil.copy(ct_small_path, tmp_path / "CT_small.dcm")  # files directly in the class folder
    (tmp_path / "covid").mkdir()
    shutil.copy(ct_small_path, tmp_path / "covid" / "CT_small.dcm")
    records, skipped = scan_dicom(tmp_path, {"covid": "covid"})
    assert skipped == [] and len(records) == 1
    rec = records[0]
    assert rec["unit"] == "HU" and rec["format"] == "dicom" and rec["slice"] == 0
    assert rec["source"] == "covid/CT_small.dcm"
    assert re.fullmatch(r"P[0-9a-f]{12}", rec["patient"]) and rec["patient"] not in ("1CT1",)
    assert rec["id"].startswith(rec["patient"] + "_") and rec["id"].endswith("_s000")
    hu = load_image(tmp_path, rec)
    assert hu.dtype == np.float32 and hu.shape == (128, 128, 1)
    assert hu.min() == pytest.approx(-896) and hu.max() == pytest.approx(1167)


def test_dicom_series_sorted_by_position(tmp_path, w):
    root = tmp_path / "dicom"
    written = w.series(root / "covid" / "series1", 6, (8, 10), tag="s1", seed=1, slope=2.0, intercept=-1000.0)
    # normal pointing feet-wards: rank 0 must still be the most inferior slice
    flipped = w.series(root / "noncovid" / "series2", 3, (8, 10), tag="s2", seed=2, patient_id="other",
                       iop=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    records, _ = scan_dicom(root, {"covid": "covid", "noncovid": "noncovid"})
    covid = [r for r in records if r["class"] == "covid"]
    assert [r["slice"] for r in covid] == list(range(6))
    assert [r["source"] for r in covid] == [p.relative_to(root).as_posix() for p, _ in written]
    assert sorted(p.name for p, _ in written) != [p.name for p, _ in written]  # file order was shuffled
    for rank, rec in enumerate(covid):
        hu = load_image(root, rec)
        assert hu.shape == (8, 10, 1)
        np.testing.assert_allclose(hu, 2.0 * 100 * (rank + 1) - 1000.0)
        assert rec["id"].endswith(f"_s{rank:03d}")
    noncovid = [r for r in records if r["class"] == "noncovid"]
    assert [r["source"] for r in noncovid] == [p.relative_to(root).as_posix() for p, _ in flipped]
    assert len({r["patient"] for r in records}) == 2
    assert len({r["id"] for r in records}) == len(records)


# --------------------------------------------------------------------------- NIfTI


def _volume(shape=(5, 12, 10), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 1500, shape).astype(np.int16)


def test_nifti_happy_path_and_orientation(tmp_path, w):
    import nibabel as nib

    root = tmp_path / "nii"
    stack = _volume()
    lung = (stack > 0).astype(np.uint8)
    infection = np.zeros(stack.shape, np.uint8)
    infection[2, 3:6, 4:8] = 2
    infection[3, 1:3, 1:3] = 1
    w.nifti(root, "case_01", stack, lung=lung, infection=infection)
    # the same volume stored left-right flipped (LAS) must read back identically
    image = nib.load(root / "images" / "case_01.nii.gz")
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = (image.shape[0] - 1) * image.affine[0, 0]
    las = nib.Nifti1Image(np.asarray(image.dataobj)[::-1], image.affine @ flip)
    nib.save(las, root / "images" / "case_02.nii")
    (root / "labels.csv").write_text("patient,class\ncase_01,covid\ncase_02,noncovid\nunused,covid\n")
    records, skipped = scan_nifti(root, labels_csv="labels.csv")
    assert skipped == [] and len(records) == 10
    one = [r for r in records if r["patient"] == "case_01"]
    two = [r for r in records if r["patient"] == "case_02"]
    assert [r["slice"] for r in one] == list(range(5)) and [r["id"] for r in one][2] == "case_01_s002"
    assert {r["class"] for r in one} == {"covid"} and {r["class"] for r in two} == {"noncovid"}
    assert one[0]["mask"] == "infection_masks/case_01.nii.gz" and one[0]["lung_mask"] == "lung_masks/case_01.nii.gz"
    assert two[0]["mask"] == "" and two[0]["source"] == "images/case_02.nii"
    for k in range(5):
        np.testing.assert_array_equal(load_image(root, one[k])[..., 0], stack[k].astype(np.float32))
        np.testing.assert_array_equal(load_image(root, two[k])[..., 0], stack[k].astype(np.float32))
        np.testing.assert_array_equal(load_mask(root, one[k]), infection[k])
        np.testing.assert_array_equal(load_mask(root, one[k], "lung_mask"), lung[k])
    assert load_image(root, one[0]).dtype == np.float32 and load_mask(root, one[0]).dtype == np.uint8


def test_nifti_class_sources(tmp_path, w):
    w.nifti(tmp_path, "a", _volume((2, 6, 6)))
    w.nifti(tmp_path, "b", _volume((3, 6, 6)))
    records, _ = scan_nifti(tmp_path, default_class="covid")
    assert len(records) == 5 and {r["class"] for r in records} == {"covid"}
    (tmp_path / "labels.csv").write_text("patient,class\na,covid\n")
    with pytest.raises(InputDataError, match=r"case 'b'") as info:
        scan_nifti(tmp_path, labels_csv="labels.csv", on_bad_file="skip")
    assert "labels.csv" in str(info.value)
    with pytest.raises(ConfigError):
        scan_nifti(tmp_path)


# --------------------------------------------------------------------------- bad inputs


def _bad_png(root, w):
    w.image(root / "CT_COVID" / "a.png", "L")
    _truncate(w.image(root / "CT_COVID" / "b.png", "RGB", (40, 40)))
    w.image(root / "CT_NonCOVID" / "c.png", "L")
    return {"format": "image_folder", "classes": CLASSES}, "CT_COVID/b.png", set()


def _bad_jpg(root, w):
    w.image(root / "CT_COVID" / "a.png", "L")
    w.image(root / "CT_NonCOVID" / "c.jpg", "L")
    _truncate(w.image(root / "CT_NonCOVID" / "d.jpg", "RGB", (40, 40)))
    return {"format": "image_folder", "classes": CLASSES}, "CT_NonCOVID/d.jpg", set()


def _not_an_image(root, w):
    w.image(root / "CT_COVID" / "a.png", "L")
    (root / "CT_COVID" / "e.PNG").write_text("this is not a PNG")
    w.image(root / "CT_NonCOVID" / "c.png", "L")
    return {"format": "image_folder", "classes": CLASSES}, "CT_COVID/e.PNG", set()


def _dicom_spec():
    return {"format": "dicom", "classes": {"covid": "covid", "noncovid": "noncovid"}}


def _bad_dicom_truncated(root, w):
    written = w.series(root / "covid" / "s1", 4, tag="t1")
    w.series(root / "noncovid" / "s2", 2, tag="t2", patient_id="x2")
    _truncate(written[1][0])
    return _dicom_spec(), written[1][0].relative_to(root).as_posix(), set()


def _bad_dicom_short_pixels(root, w):
    written = w.series(root / "covid" / "s1", 3, tag="t1")
    w.series(root / "noncovid" / "s2", 2, tag="t2", patient_id="x2")
    import pydicom

    ds = pydicom.dcmread(written[0][0])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(written[0][0])
    return _dicom_spec(), written[0][0].relative_to(root).as_posix(), set()


def _bad_dicom_garbage(root, w):
    w.series(root / "covid" / "s1", 2, tag="t1")
    w.series(root / "noncovid" / "s2", 2, tag="t2", patient_id="x2")
    (root / "noncovid" / "s2" / "junk.DCM").write_bytes(bytes(range(256)) * 4)
    return _dicom_spec(), "noncovid/s2/junk.DCM", set()


def _bad_dicom_sizes(root, w):
    written = w.series(root / "covid" / "s1", 4, (16, 16), tag="t1")
    w.series(root / "noncovid" / "s2", 2, tag="t2", patient_id="x2")
    import pydicom

    ds = pydicom.dcmread(written[2][0])
    odd = root / "covid" / "s1" / "odd.dcm"
    w.dicom(odd, np.zeros((12, 14), np.int16), z=99.0, instance=99, series_uid=ds.SeriesInstanceUID,
            study_uid=ds.StudyInstanceUID)
    return _dicom_spec(), "covid/s1/odd.dcm", set()


def _nifti_two_cases(root, w, **kwargs):
    stack = _volume((3, 8, 8))
    w.nifti(root, "good", stack, lung=(stack > 0).astype(np.uint8), infection=np.zeros_like(stack, np.uint8))
    return stack


def _bad_nifti_gz(root, w):
    _nifti_two_cases(root, w)
    _truncate(w.nifti(root, "bad", _volume((6, 32, 32), seed=2)), 0.7)
    return {"format": "nifti", "default_class": "covid"}, "images/bad.nii.gz", set()


def _bad_nifti_nii(root, w):
    _nifti_two_cases(root, w)
    _truncate(w.nifti(root, "bad", _volume((6, 32, 32), seed=2), suffix=".nii"), 0.9)
    return {"format": "nifti", "default_class": "covid"}, "images/bad.nii", set()


def _bad_nifti_mask_shape(root, w):
    _nifti_two_cases(root, w)
    w.nifti(root, "bad", _volume((3, 8, 8)), infection=np.zeros((3, 8, 7), np.uint8))
    return ({"format": "nifti", "default_class": "covid"}, "infection_masks/bad.nii.gz", {"images/bad.nii.gz"})


def _bad_nifti_labels(root, w):
    _nifti_two_cases(root, w)
    infection = np.zeros((3, 8, 8), np.uint8)
    infection[1, 2, 2] = 7
    w.nifti(root, "bad", _volume((3, 8, 8)), infection=infection)
    return ({"format": "nifti", "default_class": "covid"}, "infection_masks/bad.nii.gz", {"images/bad.nii.gz"})


def _paired(root, w, n=3):
    for i in range(n):
        w.image(root / "Imgs" / f"{i}.jpg", "L", (10, 8), seed=i)
        w.label(root / "GT" / f"{i}.png", np.zeros((8, 10), np.uint8))
    return {"format": "paired_folder"}


def _bad_paired_size(root, w):
    spec = _paired(root, w)
    w.label(root / "GT" / "1.png", np.zeros((8, 9), np.uint8))
    return spec, "GT/1.png", {"Imgs/1.jpg"}


def _bad_paired_labels(root, w):
    spec = _paired(root, w)
    labels = np.zeros((8, 10), np.uint8)
    labels[0, :3] = [1, 2, 5]
    w.label(root / "GT" / "2.png", labels, palette=False)
    return spec, "GT/2.png", {"Imgs/2.jpg"}


def _bad_paired_mask_corrupt(root, w):
    spec = _paired(root, w)
    (root / "GT" / "0.png").write_bytes((root / "GT" / "0.png").read_bytes()[:30])
    return spec, "GT/0.png", {"Imgs/0.jpg"}


def _bad_paired_image_corrupt(root, w):
    spec = _paired(root, w)
    _truncate(w.image(root / "Imgs" / "1.jpg", "RGB", (10, 8)), 0.4)
    return spec, "Imgs/1.jpg", {"GT/1.png"}


def _bad_paired_no_mask(root, w):
    spec = _paired(root, w)
    (root / "GT" / "0.png").unlink()
    return spec, "Imgs/0.jpg", set()


BAD_INPUTS = {
    "png truncated": _bad_png,
    "jpg truncated": _bad_jpg,
    "not an image": _not_an_image,
    "dicom truncated": _bad_dicom_truncated,
    "dicom short pixel data": _bad_dicom_short_pixels,
    "dicom garbage": _bad_dicom_garbage,
    "dicom inconsistent sizes": _bad_dicom_sizes,
    "nifti truncated gzip": _bad_nifti_gz,
    "nifti truncated data": _bad_nifti_nii,
    "nifti mask shape": _bad_nifti_mask_shape,
    "nifti mask labels": _bad_nifti_labels,
    "paired mask size": _bad_paired_size,
    "paired mask labels": _bad_paired_labels,
    "paired mask corrupt": _bad_paired_mask_corrupt,
    "paired image corrupt": _bad_paired_image_corrupt,
    "paired missing mask": _bad_paired_no_mask,
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_error_mode(tmp_path, w, case):
    root = tmp_path / "ds"
    spec, bad, _ = BAD_INPUTS[case](root, w)
    with pytest.raises(InputDataError) as info:
        scan_dataset(root, spec)
    assert Path(bad).name in str(info.value)
    assert info.value.fix


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_skip_mode(tmp_path, w, case):
    root = tmp_path / "ds"
    spec, bad, dropped = BAD_INPUTS[case](root, w)
    records, skipped = scan_dataset(root, {**spec, "on_bad_file": "skip"})
    assert [s["path"] for s in skipped] == [bad]
    assert skipped[0]["problem"]
    used = {r["source"] for r in records} | {r["mask"] for r in records} | {r["lung_mask"] for r in records}
    assert not ({bad} | dropped) & used
    assert records


def test_mask_label_message_lists_values(tmp_path, w):
    root = tmp_path / "ds"
    spec, _, _ = _bad_paired_labels(root, w)
    with pytest.raises(InputDataError) as info:
        scan_dataset(root, spec)
    message = str(info.value)
    assert "[5]" in message and "[0, 1, 2, 5]" in message and "[0, 1, 2]" in message
    records, _ = scan_dataset(root, {**spec, "mask_labels": [0, 1, 2, 5]})
    assert len(records) == 3


def test_inconsistent_series_message(tmp_path, w):
    root = tmp_path / "ds"
    spec, _, _ = _bad_dicom_sizes(root, w)
    with pytest.raises(InputDataError, match=r"inconsistent slice sizes: 16x16 \(4 files"):
        scan_dataset(root, spec)


def test_scan_dataset_config_errors(image_folder_root):
    with pytest.raises(ConfigError, match="unknown dataset format"):
        scan_dataset(image_folder_root, {"format": "zip"})
    with pytest.raises(ConfigError, match="on_bad_file"):
        scan_dataset(image_folder_root, {"format": "image_folder", "classes": CLASSES, "on_bad_file": "ignore"})
    with pytest.raises(ConfigError, match="patient"):
        scan_dataset(image_folder_root, {"format": "image_folder", "classes": CLASSES, "patient_regex": "(.+)"})
    with pytest.raises(ConfigError, match="classes"):
        scan_dataset(image_folder_root, {"format": "image_folder"})
    with pytest.raises(ConfigError, match="unknown keys"):
        scan_dataset(image_folder_root, {"format": "nifti", "default_class": "a", "nifti": {"image": "x"}})
    records, _ = scan_dataset(image_folder_root, {"format": "image_folder", "classes": CLASSES,
                                                  "patient_regex": None, "split": {"seed": 3}, "path": "x"})
    assert len(records) == 10
