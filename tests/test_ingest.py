"""Splits (patient-level, stratified, split lists, leakage) and the ingest step; real data; phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.data.ingest import ingest_dataset, read_manifest, records_to_frame
from lungsynth.data.readers import MANIFEST_COLUMNS, load_image, load_mask, scan_dicom, scan_image_folder, scan_nifti
from lungsynth.data.splits import SplitLeakageError, assign_splits, check_no_leakage

CLASSES = {"covid": "CT_COVID", "noncovid": "CT_NonCOVID"}
REGEX = r"^(?P<patient>.+?)(%\d+)?$"
COVID_CT_LISTS = {"train": ["Data-split/COVID/trainCT_COVID.txt", "Data-split/NonCOVID/trainCT_NonCOVID.txt"]}


def _records(patients_per_class: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """Synthetic records: each patient has 1..6 slices."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls, n in patients_per_class.items():
        for p in range(n):
            for k in range(int(rng.integers(1, 7))):
                rows.append({"id": f"{cls}{p}_s{k:03d}", "patient": f"{cls}{p}", "class": cls, "format": "nifti",
                             "unit": "HU", "source": f"images/{cls}{p}.nii.gz", "slice": k, "mask": "",
                             "lung_mask": ""})
    return records_to_frame(rows)


# --------------------------------------------------------------------------- fractions


@pytest.mark.parametrize("seed", range(8))
def test_splits_stratified_patient_level(seed):
    df = _records({"covid": 9, "noncovid": 14, "cap": 3}, seed=seed)
    out = assign_splits(df, seed=seed)
    assert list(out.columns) == list(MANIFEST_COLUMNS)
    assert len(out) == len(df) and set(out["split"]) == {"train", "val", "test"}
    for cls, rows in out.groupby("class"):
        assert set(rows["split"]) == {"train", "val", "test"}, cls
    assert (out.groupby("patient")["split"].nunique() == 1).all()
    check_no_leakage(out)
    big = out[out["class"] == "noncovid"]
    share = big["split"].value_counts(normalize=True)
    assert 0.4 <= share["train"] <= 0.8
    again = assign_splits(df.sample(frac=1.0, random_state=seed), seed=seed)  # row order does not matter
    merged = out.merge(again[["id", "split"]], on="id")
    assert (merged["split_x"] == merged["split_y"]).all()


def test_splits_seed_changes_assignment():
    df = _records({"covid": 20, "noncovid": 20})
    a, b = assign_splits(df, seed=0), assign_splits(df, seed=1)
    assert not (a["split"] == b["split"]).all()


def test_splits_too_few_patients():
    df = _records({"covid": 5, "noncovid": 2})
    with pytest.raises(InputDataError, match=r"class 'noncovid' has 2 patient") as info:
        assign_splits(df)
    assert "val/test need at least one each" in str(info.value)
    out = assign_splits(df, fractions={"train": 0.8, "test": 0.2})  # val fraction 0: two patients suffice
    assert set(out["split"]) == {"train", "test"}
    with pytest.raises(ConfigError, match="sum to 1"):
        assign_splits(df, fractions={"train": 0.5, "val": 0.1, "test": 0.1})


def test_patient_with_two_classes():
    df = _records({"covid": 3, "noncovid": 3})
    df.loc[df["patient"] == "noncovid0", "patient"] = "covid0"
    with pytest.raises(InputDataError, match=r"patient 'covid0' has slices of several classes"):
        assign_splits(df)


def test_check_no_leakage():
    df = assign_splits(_records({"covid": 4, "noncovid": 4}))
    check_no_leakage(df)
    victim = df.index[df["patient"] == "covid1"]
    df.loc[victim[0], "split"] = "train"
    df.loc[victim[-1], "split"] = "test" if len(victim) > 1 else df.loc[victim[0], "split"]
    df.loc[len(df)] = {**df.loc[victim[0]].to_dict(), "id": "extra", "split": "val"}
    with pytest.raises(SplitLeakageError, match=r"covid1") as info:
        check_no_leakage(df)
    assert isinstance(info.value, InputDataError) and "more than one split" in str(info.value)


# --------------------------------------------------------------------------- split lists


def _write_lists(root: Path, lists: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for split, names in lists.items():
        rel = f"Data-split/{split}.txt"
        (root / "Data-split").mkdir(exist_ok=True)
        (root / rel).write_text("\n".join(names) + "\n\n")
        out[split] = [rel]
    return out


def test_split_lists(image_folder_root):
    root = image_folder_root
    records, _ = scan_image_folder(root, CLASSES, patient_regex=REGEX)
    df = records_to_frame(records)
    lists = _write_lists(root, {"train": ["pA%0.png", "pA%1.png", "1.jpg", "2.png"],
                                "val": ["pB%0.png", "3.jpg"], "test": ["pC%0.png", "pC%1.png"]})
    out = assign_splits(df, split_lists=lists, root=root)
    assert out.attrs["unlisted"] == 2  # pB%1.png and 4.png
    assert len(out) == 8 and list(out.columns) == list(MANIFEST_COLUMNS)
    split_of = dict(zip(out["source"], out["split"]))
    assert split_of["CT_COVID/pA%1.png"] == "train" and split_of["CT_NonCOVID/3.jpg"] == "val"
    assert "CT_NonCOVID/4.png" not in split_of
    check_no_leakage(out)


def test_split_list_naming_missing_file(image_folder_root):
    root = image_folder_root
    df = records_to_frame(scan_image_folder(root, CLASSES)[0])
    lists = _write_lists(root, {"train": ["pA%0.png", "ghost.png"], "test": ["1.jpg"]})
    with pytest.raises(InputDataError, match=r"ghost\.png") as info:
        assign_splits(df, split_lists=lists, root=root)
    assert "train.txt" in str(info.value)
    # a listed file that the reader skipped as bad is not "missing"
    out = assign_splits(df, split_lists=lists, root=root, skipped_files=["CT_COVID/ghost.png"])
    assert len(out) == 2
    with pytest.raises(InputDataError, match="not found"):
        assign_splits(df, split_lists={"train": ["nope.txt"]}, root=root)


def test_split_lists_leak_is_detected(image_folder_root):
    root = image_folder_root
    df = records_to_frame(scan_image_folder(root, CLASSES, patient_regex=REGEX)[0])
    lists = _write_lists(root, {"train": ["pA%0.png"], "test": ["pA%1.png"]})
    out = assign_splits(df, split_lists=lists, root=root)
    with pytest.raises(SplitLeakageError, match="pA"):
        check_no_leakage(out)


# --------------------------------------------------------------------------- ingest


def _dicom_dataset(root: Path, write_dicom_series, identity: tuple[str, str], n_per_class: int = 3) -> dict:
    patient_id, patient_name = identity
    for cls in ("covid", "noncovid"):
        for p in range(n_per_class):
            write_dicom_series(root / cls / f"series_{cls}_{p}", 3, (8, 8), tag=f"{cls}{p}", seed=p,
                               patient_id=f"{patient_id}-{cls}{p}", patient_name=f"{patient_name}{cls}{p}")
    return {"format": "dicom", "classes": {"covid": "covid", "noncovid": "noncovid"},
            "split": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "seed": 3}}


def test_ingest_dicom_writes_pseudonymous_manifest(tmp_path, write_dicom_series, dicom_identity):
    root = tmp_path / "dicom"
    spec = _dicom_dataset(root, write_dicom_series, dicom_identity)
    (root / "covid" / "series_covid_0" / "broken.dcm").write_bytes(b"not dicom")
    out = tmp_path / "out"
    df = ingest_dataset(root, {**spec, "on_bad_file": "skip"}, out / "manifest.csv", out / "skipped.csv")
    assert len(df) == 18 and df["patient"].nunique() == 6
    manifest = read_manifest(out / "manifest.csv")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    pd.testing.assert_frame_equal(manifest, df.reset_index(drop=True), check_dtype=False)
    assert manifest["slice"].dtype.kind == "i" and (manifest["mask"] == "").all()
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["path"]) == ["covid/series_covid_0/broken.dcm"]
    text = (out / "manifest.csv").read_text() + (out / "skipped.csv").read_text()
    for secret in (*dicom_identity, *dicom_identity[1].split("^")):
        assert secret not in text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv", "skipped.csv"]
    row = manifest.iloc[0]
    assert load_image(root, row).shape == (8, 8, 1) and load_mask(root, row) is None


def test_dicom_folders_named_by_patient_id_are_warned_about_without_naming_it(tmp_path, write_dicom_series,
                                                                            dicom_identity, caplog):
    patient_id, patient_name = dicom_identity
    root = tmp_path / "dicom"
    for cls in ("covid", "noncovid"):
        for p in range(2):
            # a PACS-style export: one folder per PatientID
            write_dicom_series(root / cls / f"{patient_id}-{cls}{p}", 2, (8, 8), tag=f"{cls}{p}", seed=p,
                               patient_id=f"{patient_id}-{cls}{p}", patient_name=patient_name)
    spec = {"format": "dicom", "classes": {"covid": "covid", "noncovid": "noncovid"},
            "split": {"fractions": {"train": 0.5, "val": 0.0, "test": 0.5}}}
    with caplog.at_level("WARNING"):
        ingest_dataset(root, spec, tmp_path / "out" / "m.csv", tmp_path / "out" / "s.csv")
    warnings = [r.getMessage() for r in caplog.records if "PatientID or PatientName" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("4 DICOM series")
    assert patient_id not in warnings[0] and "Doe" not in warnings[0]


def test_ingest_empty_skipped_has_header(tmp_path, image_folder_root):
    out = tmp_path / "out"
    df = ingest_dataset(image_folder_root, {"format": "image_folder", "classes": CLASSES, "patient_regex": REGEX},
                        out / "m.csv", out / "s.csv")
    assert (out / "s.csv").read_text().strip() == "path,problem"
    manifest = read_manifest(out / "m.csv")
    assert manifest["id"].tolist() == df["id"].tolist()  # numeric ids such as "1" stay text
    assert set(manifest["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("failure", ["bad file", "empty class", "too few patients", "missing listed file"])
def test_ingest_writes_nothing_on_error(tmp_path, image_folder_root, failure):
    root = image_folder_root
    spec = {"format": "image_folder", "classes": CLASSES, "patient_regex": REGEX}
    if failure == "bad file":
        (root / "CT_COVID" / "zz.png").write_bytes(b"\x89PNG broken")
    elif failure == "empty class":
        spec["classes"] = {**CLASSES, "cap": "CT_CAP"}
    elif failure == "too few patients":
        for path in list((root / "CT_NonCOVID").iterdir())[2:]:
            path.unlink()
    else:
        spec["split_lists"] = _write_lists(root, {"train": ["1.jpg", "missing.png"]})
    out = tmp_path / "out"
    with pytest.raises(InputDataError):
        ingest_dataset(root, spec, out / "manifest.csv", out / "skipped.csv")
    assert not out.exists() or list(out.iterdir()) == []


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_realdata_covid_ct_image_folder(realdata_dir):
    import time

    root = realdata_dir / "covid-ct"
    start = time.perf_counter()
    records, skipped = scan_image_folder(root, CLASSES, patient_regex=REGEX)
    elapsed = time.perf_counter() - start
    assert skipped == [] and len(records) == 425
    df = records_to_frame(records)
    assert df["class"].value_counts().to_dict() == {"noncovid": 234, "covid": 191}
    by_source = df.set_index("source")
    assert (by_source.loc["CT_COVID/2020.02.10.20021584-p6-52%0.png", "patient"]
            == by_source.loc["CT_COVID/2020.02.10.20021584-p6-52%15.png", "patient"]
            == "2020.02.10.20021584-p6-52")
    plain = df[df["source"].str.fullmatch(r"CT_NonCOVID/\d+\.(png|jpg)")]
    assert len(plain) > 100 and (plain["patient"] == plain["source"].str.extract(r"/(\d+)\.")[0]).all()
    assert df["patient"].nunique() < 425 and df["id"].str.fullmatch(r"[A-Za-z0-9._-]+").all()
    out = assign_splits(df, seed=0)
    check_no_leakage(out)
    for _, rows in out.groupby("class"):
        assert set(rows["split"]) == {"train", "val", "test"}
    channels = {load_image(root, row).shape[2] for row in records[::40]}
    assert channels <= {1, 3}
    print(f"scanned covid-ct (425 images) in {elapsed:.2f} s")


@pytest.mark.realdata
def test_realdata_covid_ct_split_lists(realdata_dir, tmp_path):
    root = realdata_dir / "covid-ct"
    spec = {"format": "image_folder", "classes": CLASSES, "patient_regex": REGEX, "split_lists": COVID_CT_LISTS}
    df = ingest_dataset(root, spec, tmp_path / "manifest.csv", tmp_path / "skipped.csv")
    assert len(df) == 425 and df.attrs["unlisted"] == 0 and set(df["split"]) == {"train"}


@pytest.mark.realdata
def test_realdata_covid_semiseg_paired(realdata_dir):
    from lungsynth.data.readers import scan_paired_folder

    root = realdata_dir / "covid-semiseg" / "train"
    records, skipped = scan_paired_folder(root, images="Imgs", masks="GT", default_class="covid")
    assert skipped == [] and len(records) == 50
    values: set[int] = set()
    for row in records:
        image, mask = load_image(root, row), load_mask(root, row)
        assert mask.shape == image.shape[:2] and image.shape[2] in (1, 3)
        values |= set(np.unique(mask).tolist())
        assert row["lung_mask"] == ""
    assert values <= {0, 1, 2} and {1, 2} <= values


# --------------------------------------------------------------------------- phantom (lungsynth.phantom.ct)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    """6 patients (3 per class) x 3 slices of 32x32, written once for this module."""
    ct = pytest.importorskip("lungsynth.phantom.ct", reason="lungsynth.phantom.ct is not written yet")
    out = tmp_path_factory.mktemp("phantom") / "phantom"
    ct.write_phantom_ct(out, n_patients=6, slices_per_patient=3, size=32, seed=0)
    return out


def _phantom_nifti(phantom_dir: Path):
    labels = phantom_dir / "labels.csv"
    return scan_nifti(
        phantom_dir, images="nifti/images", lung_masks="nifti/lung_masks",
        infection_masks="nifti/infection_masks", labels_csv=labels.relative_to(phantom_dir).as_posix(),
    )


def test_phantom_dicom_and_nifti_agree(phantom_dir):
    root = phantom_dir / "dicom"
    classes = {p.name: p.name for p in sorted(root.iterdir()) if p.is_dir()}
    dicom, skipped = scan_dicom(root, classes)
    assert skipped == [] and len(dicom) == 18 and {r["unit"] for r in dicom} == {"HU"}
    assert pd.DataFrame(dicom).groupby("patient").size().tolist() == [3] * 6
    nifti, skipped = _phantom_nifti(phantom_dir)
    assert skipped == [] and len(nifti) == 18
    labels = pd.read_csv(phantom_dir / "labels.csv", dtype=str)
    assert dict(zip(labels["patient"], labels["class"])) == {r["patient"]: r["class"] for r in nifti}
    assert all(r["mask"] and r["lung_mask"] for r in nifti)
    by_case = {(r["patient"], r["slice"]): r for r in nifti}
    for rec in dicom:  # dicom/<class>/<case>/<file>.dcm: same case, same slice order, same pixels
        case = rec["source"].split("/")[1]
        twin = by_case[(case, rec["slice"])]
        assert twin["class"] == rec["class"]
        np.testing.assert_array_equal(load_image(root, rec), load_image(phantom_dir, twin))
    row = nifti[0]
    assert load_image(phantom_dir, row).shape == (32, 32, 1)
    assert set(np.unique(load_mask(phantom_dir, row, "lung_mask"))) <= {0, 1}
    assert set(np.unique(load_mask(phantom_dir, row))) <= {0, 1, 2}


def test_phantom_ingest_is_pseudonymous(phantom_dir, tmp_path):
    import pydicom

    root = phantom_dir / "dicom"
    first = next(root.rglob("*.dcm"))
    header = pydicom.dcmread(first, stop_before_pixels=True)
    spec = {"format": "dicom", "classes": {p.name: p.name for p in sorted(root.iterdir()) if p.is_dir()}}
    df = ingest_dataset(root, spec, tmp_path / "manifest.csv", tmp_path / "skipped.csv")
    assert len(df) == 18 and df["patient"].nunique() == 6
    text = (tmp_path / "manifest.csv").read_text()
    for secret in (str(header.PatientID), str(header.PatientName), *str(header.PatientName).split("^")):
        assert secret not in text


def test_patient_level_split_with_several_classes_per_patient():
    """Lung-ultrasound exams: each patient has areas of different scores; patients stay whole."""
    import pandas as pd

    from lungsynth.data.splits import assign_splits, check_no_leakage

    rows = []
    for p in range(12):
        for area in range(4):
            score = str((p + area) % 4)
            for f in range(3):
                rows.append({"id": f"p{p}_a{area}_f{f}", "patient": f"patient{p:02d}", "class": score,
                             "format": "lus_mat", "unit": "8bit", "source": f"p{p}_a{area}.mat", "slice": f,
                             "mask": "", "lung_mask": ""})
    df = pd.DataFrame(rows)
    with pytest.raises(Exception, match="several classes"):
        assign_splits(df, fractions={"train": 0.5, "val": 0.0, "test": 0.5})
    out = assign_splits(df, fractions={"train": 0.5, "val": 0.0, "test": 0.5}, multiclass_patients=True)
    check_no_leakage(out)
    assert out.groupby("patient")["split"].nunique().max() == 1
    for split in ("train", "test"):
        assert set(out.loc[out["split"] == split, "class"]) == {"0", "1", "2", "3"}
    assert abs((out["split"] == "train").mean() - 0.5) < 0.2
