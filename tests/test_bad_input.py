"""Bad-input corpus: symbolic links, DICOM by content, precise messages, NIfTI image/mask headers.

Each error case runs through :func:`lungsynth.data.ingest.ingest_dataset` and checks the
exception, its message (file named, cause stated) and that no manifest or
skipped-files report was left behind. Cases that must work check the values read.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungsynth.errors import InputDataError
from lungsynth.data.ingest import ingest_dataset, read_manifest
from lungsynth.data.readers import load_image, load_mask, scan_dataset

CLASSES = {"covid": "CT_COVID", "noncovid": "CT_NonCOVID"}
REGEX = r"^(?P<patient>.+?)(%\d+)?$"
IMAGE_SPEC = {"format": "image_folder", "classes": CLASSES, "patient_regex": REGEX}
DICOM_SPEC = {"format": "dicom", "classes": {"covid": "covid", "noncovid": "noncovid"},
              "split": {"fractions": {"train": 0.5, "val": 0.0, "test": 0.5}}}
COVID_FILES = [f"CT_COVID/{p}%{k}.png" for p in ("pA", "pB", "pC") for k in range(2)]
NONCOVID_FILES = ["CT_NonCOVID/1.jpg", "CT_NonCOVID/2.png", "CT_NonCOVID/3.jpg", "CT_NonCOVID/4.png"]


def _ingest_fails(tmp_path: Path, root: Path, spec: dict, match: str) -> InputDataError:
    """Run ingest_dataset, expect an InputDataError matching ``match``, and check that nothing was written."""
    manifest, skipped = tmp_path / "out" / "manifest.csv", tmp_path / "out" / "skipped.csv"
    with pytest.raises(InputDataError, match=match) as info:
        ingest_dataset(root, spec, manifest, skipped)
    assert not manifest.exists() and not skipped.exists()
    assert info.value.fix
    return info.value


def _ingest(tmp_path: Path, root: Path, spec: dict, name: str = "out") -> pd.DataFrame:
    out = tmp_path / name
    ingest_dataset(root, spec, out / "manifest.csv", out / "skipped.csv")
    return read_manifest(out / "manifest.csv")


def _sources(records, cls: str) -> list[str]:
    return [r["source"] for r in records if r["class"] == cls]


# --------------------------------------------------------------------------- 1. symbolic links


def test_symlink_loop_in_class_folder_reads_each_file_once(tmp_path, image_folder_root, caplog):
    root = image_folder_root
    os.symlink("..", root / "CT_COVID" / "loop")  # CT_COVID/loop/CT_NonCOVID/... would relabel noncovid as covid
    os.symlink(".", root / "CT_NonCOVID" / "self")
    with caplog.at_level(logging.WARNING):
        manifest = _ingest(tmp_path, root, IMAGE_SPEC)
    assert sorted(manifest.loc[manifest["class"] == "covid", "source"]) == COVID_FILES
    assert sorted(manifest.loc[manifest["class"] == "noncovid", "source"]) == NONCOVID_FILES
    assert len(manifest) == 10 and manifest["id"].is_unique
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "CT_COVID/loop -> the dataset root" in warnings and "CT_NonCOVID/self -> CT_NonCOVID" in warnings
    assert "into the dataset" in warnings


def test_link_to_a_file_inside_the_dataset_is_not_read_twice(image_folder_root, caplog):
    root = image_folder_root
    os.symlink("../CT_NonCOVID/2.png", root / "CT_COVID" / "alias.png")  # would put one file in two classes
    with caplog.at_level(logging.WARNING):
        records, _ = scan_dataset(root, IMAGE_SPEC)
    assert sorted(_sources(records, "covid")) == COVID_FILES
    assert sorted(_sources(records, "noncovid")) == NONCOVID_FILES
    assert "CT_COVID/alias.png -> CT_NonCOVID/2.png" in caplog.text


def test_dataset_root_that_is_a_symlink_or_below_one(tmp_path, image_folder_root):
    expected, _ = scan_dataset(image_folder_root, IMAGE_SPEC)
    os.symlink("..", image_folder_root / "CT_COVID" / "loop")
    alias = tmp_path / "alias"
    os.symlink(image_folder_root, alias)  # the root itself is a link
    (tmp_path / "linked_parent").symlink_to(tmp_path)  # a link in the root's path
    for root in (alias, tmp_path / "linked_parent" / "ds", tmp_path / "linked_parent" / "alias"):
        records, skipped = scan_dataset(root, IMAGE_SPEC)
        assert skipped == [] and records == expected, root


def test_class_folder_that_is_a_link_out_of_the_dataset_is_read(tmp_path, image_folder_root):
    expected, _ = scan_dataset(image_folder_root, IMAGE_SPEC)
    shutil.move(image_folder_root / "CT_COVID", tmp_path / "covid_elsewhere")
    os.symlink(tmp_path / "covid_elsewhere", image_folder_root / "CT_COVID")  # the config names this folder
    os.symlink(image_folder_root, tmp_path / "covid_elsewhere" / "back")  # but a link back in is still not followed
    records, _ = scan_dataset(image_folder_root, IMAGE_SPEC)
    assert records == expected


def test_links_out_of_the_dataset_follow_the_setting(tmp_path, image_folder_root, write_image, caplog):
    root = image_folder_root
    outside = tmp_path / "elsewhere"
    write_image(outside / "extra" / "pD%0.png", seed=40)
    write_image(outside / "extra" / "pD%1.png", seed=41)
    os.symlink("..", outside / "extra" / "up")  # a loop outside the dataset
    os.symlink(outside / "extra", root / "CT_COVID" / "ext")
    os.symlink(outside / "extra" / "pD%0.png", root / "CT_COVID" / "same.png")  # a second path to one file
    with caplog.at_level(logging.WARNING):
        records, _ = scan_dataset(root, IMAGE_SPEC)  # default: not followed
    assert sorted(_sources(records, "covid")) == COVID_FILES
    assert "out of the dataset (set follow_links_outside: true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        records, _ = scan_dataset(root, {**IMAGE_SPEC, "follow_links_outside": True})
    covid = _sources(records, "covid")
    assert sorted(covid) == sorted(COVID_FILES + ["CT_COVID/ext/pD%0.png", "CT_COVID/ext/pD%1.png"])
    assert len(covid) == len(set(covid)) == 8  # the loop ended, same.png was read once (as ext/pD%0.png)
    assert sorted(_sources(records, "noncovid")) == NONCOVID_FILES
    assert "CT_COVID/same.png is the same file as CT_COVID/ext/pD%0.png" in caplog.text
    pixels = {r["source"]: load_image(root, r) for r in records}
    np.testing.assert_array_equal(pixels["CT_COVID/ext/pD%1.png"], load_image(outside / "extra", {
        "format": "image_folder", "source": "pD%1.png"}))


def test_one_file_in_two_classes_is_an_error(tmp_path, image_folder_root):
    root = image_folder_root
    os.link(root / "CT_COVID" / "pA%0.png", root / "CT_NonCOVID" / "5.png")  # a hard link
    err = _ingest_fails(tmp_path, root, IMAGE_SPEC, r"same file as CT_COVID/pA%0\.png")
    assert err.path.endswith("CT_NonCOVID/5.png") and "two classes" in err.problem


def test_hard_link_within_a_class_is_read_once(image_folder_root, caplog):
    root = image_folder_root
    os.link(root / "CT_COVID" / "pA%0.png", root / "CT_COVID" / "pA%9.png")
    with caplog.at_level(logging.WARNING):
        records, _ = scan_dataset(root, IMAGE_SPEC)
    assert sorted(_sources(records, "covid")) == COVID_FILES
    assert "CT_COVID/pA%9.png is the same file as CT_COVID/pA%0.png" in caplog.text


# --------------------------------------------------------------------------- 2. DICOM by content


def _dicom_dataset(root: Path, write_dicom_series) -> None:
    for cls in ("covid", "noncovid"):
        for p in range(2):
            write_dicom_series(root / cls / f"series{p}", 3, (8, 8), tag=f"{cls}{p}", seed=p, patient_id=f"{cls}{p}")


def test_dicom_files_without_suffix_read_like_dcm(tmp_path, write_dicom_series, caplog):
    with_suffix = tmp_path / "dcm"
    _dicom_dataset(with_suffix, write_dicom_series)
    pacs = tmp_path / "pacs"
    shutil.copytree(with_suffix, pacs)  # same bytes, so the same UIDs and ids
    renamed = {}
    for i, path in enumerate(sorted(pacs.rglob("*.dcm"))):
        new = path.with_name(f"IM{i:04d}" if i % 2 else f"1.2.840.113619.{i}")  # PACS names, no .dcm
        path.rename(new)
        renamed[path.relative_to(pacs).as_posix()] = new.relative_to(pacs).as_posix()
    (pacs / "covid" / "series0" / "notes.txt").write_text("not DICOM")
    (pacs / "covid" / "series0" / "DICOMDIR").write_bytes((pacs / "covid" / "series0" / "IM0001").read_bytes())
    expected = _ingest(tmp_path, with_suffix, DICOM_SPEC, "a")
    with caplog.at_level(logging.WARNING):
        got = _ingest(tmp_path, pacs, DICOM_SPEC, "b")
    assert "ignored 1 files that are not DICOM" in caplog.text and "notes.txt" in caplog.text
    assert len(got) == 12
    pd.testing.assert_frame_equal(got.drop(columns="source"), expected.drop(columns="source"))
    assert list(got["source"]) == [renamed[s] for s in expected["source"]]
    for (_, a), (_, b) in zip(expected.iterrows(), got.iterrows()):
        np.testing.assert_array_equal(load_image(with_suffix, a), load_image(pacs, b))


def test_dicom_class_without_dicom_files_says_so(tmp_path, write_dicom_series):
    root = tmp_path / "dcm"
    _dicom_dataset(root, write_dicom_series)
    shutil.rmtree(root / "noncovid")
    (root / "noncovid").mkdir()
    for name in ("scan1.png", "scan2", "README"):
        (root / "noncovid" / name).write_bytes(b"\x89PNG not dicom" * 20)
    err = _ingest_fails(tmp_path, root, DICOM_SPEC, r"class 'noncovid' has 3 files, none is DICOM \(no 'DICM' marker")
    assert err.path.endswith("noncovid") and "noncovid/README" in err.problem


# --------------------------------------------------------------------------- 3. precise messages


def _empty_png(root: Path, write_dicom_series, write_nifti_case) -> tuple[dict, Path]:
    (root / "CT_COVID" / "pA%0.png").write_bytes(b"")
    return IMAGE_SPEC, root / "CT_COVID" / "pA%0.png"


def _empty_dicom(root: Path, write_dicom_series, write_nifti_case) -> tuple[dict, Path]:
    root = root.parent / "dcm"
    _dicom_dataset(root, write_dicom_series)
    written = sorted((root / "covid" / "series1").iterdir())
    written[0].write_bytes(b"")
    return DICOM_SPEC, written[0]


def _empty_nifti(root: Path, write_dicom_series, write_nifti_case) -> tuple[dict, Path]:
    root = root.parent / "nii"
    for i in range(4):
        write_nifti_case(root, f"case{i}", np.zeros((2, 6, 6), np.int16))
    path = write_nifti_case(root, "case4", np.zeros((2, 6, 6), np.int16))
    path.write_bytes(b"")
    return {"format": "nifti", "default_class": "covid",
            "split": {"fractions": {"train": 0.5, "val": 0.0, "test": 0.5}}}, path


@pytest.mark.parametrize("make", [_empty_png, _empty_dicom, _empty_nifti], ids=["png", "dicom", "nifti"])
def test_zero_byte_file_is_called_empty(tmp_path, image_folder_root, write_dicom_series, write_nifti_case, make):
    spec, bad = make(image_folder_root, write_dicom_series, write_nifti_case)
    root = next(p for p in bad.parents if p.name in ("ds", "dcm", "nii"))
    err = _ingest_fails(tmp_path, root, spec, r"file is empty \(0 bytes\)")
    assert err.path == str(bad)
    records, skipped = scan_dataset(root, {**spec, "on_bad_file": "skip"})
    assert skipped == [{"path": bad.relative_to(root).as_posix(), "problem": "file is empty (0 bytes)",
                        "class": "covid"}]
    assert bad.relative_to(root).as_posix() not in {r["source"] for r in records}


def _short_pixel_data(path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(path)


@pytest.mark.parametrize("how", ["cut in pixel data", "cut before pixel data", "cut in header", "short element"])
def test_truncated_dicom_is_called_truncated(tmp_path, write_dicom_series, how):
    root = tmp_path / "dcm"
    _dicom_dataset(root, write_dicom_series)
    bad = sorted((root / "noncovid" / "series0").iterdir())[1]
    data = bad.read_bytes()
    if how == "short element":
        _short_pixel_data(bad)
    else:
        keep = {"cut in pixel data": len(data) - 40, "cut before pixel data": len(data) // 2, "cut in header": 140}
        bad.write_bytes(data[: keep[how]])
    err = _ingest_fails(tmp_path, root, DICOM_SPEC, r"DICOM file is truncated")
    assert err.path == str(bad)
    assert "pylibjpeg" not in str(err) and "gdcm" not in str(err)
    if how in ("cut in pixel data", "short element"):
        assert "but 8 rows x 8 columns x 16 bits need 128 bytes" in err.problem


def test_split_error_after_skipping_names_the_skipped_files(tmp_path, image_folder_root):
    root = image_folder_root
    (root / "CT_NonCOVID" / "1.jpg").write_bytes(b"")
    (root / "CT_NonCOVID" / "3.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    err = _ingest_fails(tmp_path, root, {**IMAGE_SPEC, "on_bad_file": "skip"},
                        r"class 'noncovid' has 2 patient\(s\)")
    assert "(2 file(s) of this class were skipped as bad (on_bad_file: skip); see the log" in err.problem
    assert err.fix.startswith("fix or replace the skipped files")
    # without skipping the same shortage says nothing about skipped files
    for name in ("1.jpg", "3.jpg"):
        (root / "CT_NonCOVID" / name).unlink()
    err = _ingest_fails(tmp_path, root, IMAGE_SPEC, r"class 'noncovid' has 2 patient\(s\)")
    assert "skipped" not in err.problem


def test_nifti_class_emptied_by_skipping_says_so(tmp_path, write_nifti_case):
    root = tmp_path / "nii"
    for i in range(3):
        write_nifti_case(root, f"a{i}", np.zeros((2, 6, 6), np.int16))
    write_nifti_case(root, "b0", np.zeros((2, 6, 6), np.int16)).write_bytes(b"")
    (root / "labels.csv").write_text("patient,class\na0,covid\na1,covid\na2,covid\nb0,noncovid\n")
    spec = {"format": "nifti", "labels_csv": "labels.csv", "on_bad_file": "skip"}
    _ingest_fails(tmp_path, root, spec, r"class 'noncovid' has no readable volumes \(all 1 cases of this class "
                                        r"were skipped as bad")


# --------------------------------------------------------------------------- 4. NIfTI image vs mask headers


def _reoriented(image, codes: str):
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    return image.as_reoriented(ornt_transform(io_orientation(image.affine), axcodes2ornt(tuple(codes))))


def _nifti_with_mask(root: Path, write_nifti_case, seed: int = 0):
    rng = np.random.default_rng(seed)
    stack = rng.integers(-1000, 1000, (4, 10, 8)).astype(np.int16)
    lung = np.zeros(stack.shape, np.uint8)
    lung[:, 2:6, 1:4] = 1  # asymmetric, so that a mirror shows
    infection = np.zeros(stack.shape, np.uint8)
    infection[1, 3, 1] = 2
    write_nifti_case(root, "c0", stack, lung=lung, infection=infection)
    for i in range(1, 3):
        write_nifti_case(root, f"c{i}", stack)
    return stack, lung, infection


NIFTI_SPEC = {"format": "nifti", "default_class": "covid",
              "split": {"fractions": {"train": 0.5, "val": 0.0, "test": 0.5}}}


def test_nifti_mask_stored_in_another_voxel_order_loads_aligned(tmp_path, write_nifti_case):
    import nibabel as nib

    root = tmp_path / "nii"
    stack, lung, infection = _nifti_with_mask(root, write_nifti_case)
    image_path = root / "images" / "c0.nii.gz"
    lps = _reoriented(nib.load(image_path), "LPS")  # image saved LPS, masks stay RAS (same world grid)
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S")
    nib.save(lps, image_path)
    pas = _reoriented(nib.load(root / "lung_masks" / "c0.nii.gz"), "PSL")  # a permuted, flipped lung mask
    nib.save(pas, root / "lung_masks" / "c0.nii.gz")
    manifest = _ingest(tmp_path, root, NIFTI_SPEC)
    rows = manifest[manifest["patient"] == "c0"].sort_values("slice")
    assert list(rows["slice"]) == [0, 1, 2, 3] and (rows["mask"] == "infection_masks/c0.nii.gz").all()
    for k, (_, row) in enumerate(rows.iterrows()):
        np.testing.assert_array_equal(load_image(root, row)[..., 0], stack[k])
        np.testing.assert_array_equal(load_mask(root, row, "lung_mask"), lung[k])
        np.testing.assert_array_equal(load_mask(root, row), infection[k])


def test_nifti_mask_within_float_tolerance_is_accepted(tmp_path, write_nifti_case):
    import nibabel as nib

    root = tmp_path / "nii"
    _nifti_with_mask(root, write_nifti_case)
    path = root / "lung_masks" / "c0.nii.gz"
    mask = nib.load(path)
    affine = mask.affine.copy()
    affine[:3, 3] += 4e-4  # below the 1e-3 mm tolerance
    affine[0, 0] += 5e-5  # below the 1e-4 spacing tolerance
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), affine), path)
    assert len(_ingest(tmp_path, root, NIFTI_SPEC)) == 12


@pytest.mark.parametrize("change", ["mirrored", "shifted", "spacing"])
def test_nifti_mask_header_mismatch_is_an_error(tmp_path, write_nifti_case, change):
    import nibabel as nib

    root = tmp_path / "nii"
    _nifti_with_mask(root, write_nifti_case)
    path = root / "infection_masks" / "c0.nii.gz"
    mask = nib.load(path)
    affine = mask.affine.copy()
    if change == "mirrored":  # same voxels, header claims left-right flipped
        affine[0, 0] = -affine[0, 0]
    elif change == "shifted":
        affine[2, 3] += 2.5  # one slice off
    else:
        affine[1, 1] *= 1.25
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), affine), path)
    err = _ingest_fails(tmp_path, root, NIFTI_SPEC, r"mask header does not match its image images/c0\.nii\.gz")
    assert err.path == str(path)
    assert f"mask stored as {'LAS' if change == 'mirrored' else 'RAS'}, image as RAS" in err.problem
    assert {"mirrored": "origin", "shifted": "origin (0, 0, 2.5) mm vs (0, 0, 0) mm",
            "spacing": "voxel spacing (0.8, 1, 2.5) mm vs (0.8, 0.8, 2.5) mm"}[change] in err.problem
    assert err.fix.startswith("resample/reorient the mask onto the image grid, or fix its header")
    records, skipped = scan_dataset(root, {**NIFTI_SPEC, "on_bad_file": "skip"})
    assert [s["path"] for s in skipped] == ["infection_masks/c0.nii.gz"]
    assert "c0" not in {r["patient"] for r in records}
