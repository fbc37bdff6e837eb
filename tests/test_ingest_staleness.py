"""Ingest reruns exactly when a dataset's content changes (lungsynth.data.listing + rule ingest).

Unit tests of the content fingerprint on real folders, then the workflow on a
small image_folder dataset: after a first run, ``snakemake -n`` plans ingest
(and preprocess, which depends on it) exactly when a file below the dataset
changes, and says "Nothing to be done" once the change is undone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from wfutil import REPO, job_counts, snakemake

from lungsynth.data.listing import dataset_entries, dataset_fingerprint, named_files

SPEC = {"format": "image_folder", "classes": {"covid": "CT_COVID", "noncovid": "CT_NonCOVID"}}


def _dataset(root: Path, write_image, n: int = 4) -> Path:
    for cls in ("CT_COVID", "CT_NonCOVID"):
        for i in range(n):
            write_image(root / cls / f"{cls.lower()}_{i}.png", seed=i)
    return root


def _bump_mtime(path: Path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def _flip_byte(path: Path) -> None:
    """Change one byte (same size) and move the mtime on."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _bump_mtime(path)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_sees_add_delete_modify(tmp_path, write_image):
    root = _dataset(tmp_path / "data", write_image)
    first = dataset_fingerprint(root, SPEC)
    assert first == dataset_fingerprint(root, SPEC)
    assert first.startswith("8 files, ")

    added = write_image(root / "CT_COVID" / "nested" / "extra.png", seed=9)
    assert dataset_fingerprint(root, SPEC) != first
    added.unlink()
    added.parent.rmdir()
    assert dataset_fingerprint(root, SPEC) == first

    victim = root / "CT_NonCOVID" / "ct_noncovid_1.png"
    saved, st = victim.read_bytes(), victim.stat()
    victim.unlink()
    assert dataset_fingerprint(root, SPEC) != first
    victim.write_bytes(saved)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dataset_fingerprint(root, SPEC) == first

    victim.write_bytes(saved + b"\0")  # other size
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dataset_fingerprint(root, SPEC) != first
    victim.write_bytes(saved)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    _flip_byte(victim)  # same size, new mtime
    assert victim.stat().st_size == st.st_size
    assert dataset_fingerprint(root, SPEC) != first


def test_hidden_entries_are_ignored(tmp_path, write_image):
    root = _dataset(tmp_path / "data", write_image)
    first = dataset_fingerprint(root, SPEC)
    (root / "CT_COVID" / ".DS_Store").write_bytes(b"junk")
    write_image(root / "CT_COVID" / ".cache" / "thumb.png")
    (root / ".git").mkdir()
    (root / ".git" / "index").write_bytes(b"x")
    assert dataset_fingerprint(root, SPEC) == first


def test_symlink_loop_ends_and_is_listed_once(tmp_path, write_image):
    root = _dataset(tmp_path / "data", write_image)
    first = dataset_fingerprint(root, SPEC)
    (root / "CT_COVID" / "loop").symlink_to("..")
    (root / "CT_NonCOVID" / "self").symlink_to(".")
    entries = dataset_entries(root, SPEC)
    files = [e[1] for e in entries if e[0] == "file"]
    assert len(files) == 8 and len(set(files)) == 8
    assert ("seen", "CT_COVID/loop/", str(root.resolve())) in entries
    fingerprint = dataset_fingerprint(root, SPEC)
    assert fingerprint != first  # the links are entries of their own
    assert dataset_fingerprint(root, SPEC) == fingerprint


def test_links_are_followed_inside_the_root_only(tmp_path, write_image):
    root = _dataset(tmp_path / "data", write_image)
    write_image(root / ".stash" / "hidden_but_linked.png")  # reached through a link only
    (root / "CT_COVID" / "linked").symlink_to("../.stash")
    outside = tmp_path / "outside"
    write_image(outside / "far.png")
    (root / "CT_NonCOVID" / "far").symlink_to(outside)
    (root / "CT_NonCOVID" / "file_link.png").symlink_to(outside / "far.png")
    (root / "CT_NonCOVID" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    entries = dataset_entries(root, SPEC)
    files = {e[1]: e for e in entries if e[0] == "file"}
    assert "CT_COVID/linked/hidden_but_linked.png" in files
    assert not any(p.startswith("CT_NonCOVID/far/") for p in files)
    assert ("link-outside", "CT_NonCOVID/far/", str(outside.resolve())) in entries
    assert files["CT_NonCOVID/file_link.png"][-1] == str((outside / "far.png").resolve())
    assert ("broken-link", "CT_NonCOVID/dangling.png", str(tmp_path / "nowhere.png")) in entries
    before = dataset_fingerprint(root, SPEC)
    _bump_mtime(outside / "far.png")  # read through the file link: seen
    assert dataset_fingerprint(root, SPEC) != before

    following = dict(SPEC, follow_links_outside=True)  # the readers then read through links out of the root
    files = {e[1] for e in dataset_entries(root, following) if e[0] == "file"}
    assert "CT_NonCOVID/far/far.png" in files
    (outside / "loop").symlink_to(root)  # out and back in: still ends
    assert "CT_NonCOVID/far/far.png" in {e[1] for e in dataset_entries(root, following) if e[0] == "file"}


def test_named_files_outside_the_root_are_included(tmp_path, write_image):
    root = _dataset(tmp_path / "data", write_image)
    lists = tmp_path / "lists"
    lists.mkdir()
    for split in ("train", "val", "test"):
        (lists / f"{split}.txt").write_text(f"ct_covid_0.png\n# {split}\n")
    (tmp_path / "labels.csv").write_text("patient,class\n")
    spec = dict(SPEC, labels_csv="../labels.csv", scores_csv="absent.csv",
                split_lists={"train": ["../lists/train.txt", "../lists/val.txt"], "test": "../lists/test.txt"})
    assert sorted(Path(p).resolve() for p in named_files(root, spec)) == sorted(
        p.resolve() for p in [tmp_path / "labels.csv", *lists.iterdir()])
    entries = dataset_entries(root, spec)
    assert ("named", "absent.csv", "missing") in entries
    first = dataset_fingerprint(root, spec)
    for path in (tmp_path / "labels.csv", lists / "test.txt", lists / "val.txt"):
        saved = path.stat()
        path.write_text(path.read_text() + "ct_covid_1.png\n")
        assert dataset_fingerprint(root, spec) != first, path
        path.write_text(path.read_text().replace("ct_covid_1.png\n", ""))
        os.utime(path, ns=(saved.st_atime_ns, saved.st_mtime_ns))
        assert dataset_fingerprint(root, spec) == first, path
    (tmp_path / "absent.csv").write_text("file,score\n")  # absent.csv is relative to root: still missing
    assert dataset_fingerprint(root, spec) == first
    (root / "absent.csv").write_text("file,score\n")
    assert dataset_fingerprint(root, spec) != first


def test_class_folder_outside_the_root_and_listed_videos_are_walked(tmp_path, write_image):
    root = tmp_path / "data"
    write_image(root / "CT_COVID" / "a.png")
    write_image(tmp_path / "elsewhere" / "b.png")
    spec = {"format": "image_folder", "classes": {"covid": "CT_COVID", "noncovid": "../elsewhere"}}
    assert "../elsewhere/b.png" in {e[1] for e in dataset_entries(root, spec) if e[0] == "file"}

    (root / "labels.csv").write_text("path,lung_severity_score\n../videos/v.mp4,1\n")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v.mp4").write_bytes(b"video")
    video_spec = {"format": "lus_video", "labels_csv": None}
    first = dataset_fingerprint(root, video_spec)
    _bump_mtime(tmp_path / "videos" / "v.mp4")
    assert dataset_fingerprint(root, video_spec) != first


def test_excluded_results_folder_is_not_listed(tmp_path, write_image):
    root = _dataset(tmp_path, write_image)  # the dataset root is the working directory
    first = dataset_fingerprint(root, SPEC, exclude=[tmp_path / "results"])
    (tmp_path / "results" / "mine").mkdir(parents=True)
    (tmp_path / "results" / "mine" / "manifest.csv").write_text("id\n")
    assert dataset_fingerprint(root, SPEC, exclude=[tmp_path / "results"]) == first
    assert dataset_fingerprint(root, SPEC) != first


def test_missing_root_gives_a_fingerprint(tmp_path):
    assert dataset_fingerprint(tmp_path / "nope", SPEC) != dataset_fingerprint(tmp_path, SPEC)


def test_listing_module_imports_no_heavy_packages():
    code = ("import sys, lungsynth.data.listing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'torch', 'PIL'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- workflow

CONFIG = """\
datasets:
  mine:
    format: image_folder
    path: data
    classes: {{covid: CT_COVID, noncovid: CT_NonCOVID}}
    on_bad_file: skip
{extra}
dcgan: {{enabled: false, dataset: mine}}
lusgan: {{enabled: false, dataset: mine}}
cgan: {{enabled: false, dataset: mine}}
classifier: {{dataset: mine}}
ablation: {{segmentation: {{enabled: false}}, classifier: {{enabled: false}}}}
preprocess: {{size: 16}}
"""
SPLIT_LISTS = """\
    split_lists:
      train: [../lists/train.txt]
      val: [../lists/val.txt]
      test: [../lists/test.txt]
"""
MANIFEST = "results/mine/ingest/manifest.csv"
SUMMARY = "results/mine/preprocessed/summary.json"


def _run(workdir: Path, *args: str):
    return snakemake(workdir, *args, configfiles=(workdir / "config.yaml",), cores=1, timeout=300)


def _plan(workdir: Path, target: str = SUMMARY) -> tuple[dict[str, int], str]:
    result = _run(workdir, "-n", target)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return job_counts(output), output


def _assert_nothing_to_do(workdir: Path) -> None:
    counts, output = _plan(workdir)
    assert "Nothing to be done" in output and not counts, output[-3000:]


def _assert_ingest_planned(workdir: Path) -> None:
    counts, output = _plan(workdir)
    assert counts == {"ingest": 1, "preprocess": 1}, output[-3000:]
    assert "Params have changed since last execution" in output


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    """A work folder whose dataset (split lists outside it) was ingested and preprocessed once."""
    from conftest import _write_image

    workdir = tmp_path_factory.mktemp("staleness")
    _dataset(workdir / "data", _write_image)
    lists = workdir / "lists"
    lists.mkdir()
    for split, ids in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        (lists / f"{split}.txt").write_text("".join(f"{c}_{i}.png\n" for c in ("ct_covid", "ct_noncovid") for i in ids))
    (workdir / "config.yaml").write_text(CONFIG.format(extra=SPLIT_LISTS))
    result = _run(workdir, SUMMARY)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return workdir


def test_no_change_has_nothing_to_do(ingested):
    _assert_nothing_to_do(ingested)


def test_added_image_reruns_ingest_and_preprocess(ingested, write_image):
    added = write_image(ingested / "data" / "CT_COVID" / "ct_covid_9.png", seed=9)
    try:
        _assert_ingest_planned(ingested)
    finally:
        added.unlink()
    _assert_nothing_to_do(ingested)  # the listing is back to what was ingested


def test_deleted_image_reruns_ingest(ingested):
    victim = ingested / "data" / "CT_NonCOVID" / "ct_noncovid_3.png"
    saved, st = victim.read_bytes(), victim.stat()
    victim.unlink()
    try:
        _assert_ingest_planned(ingested)
    finally:
        victim.write_bytes(saved)
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    _assert_nothing_to_do(ingested)


@pytest.mark.parametrize("same_size", [False, True], ids=["new-size", "same-size-new-mtime"])
def test_modified_image_reruns_ingest(ingested, write_image, same_size):
    victim = ingested / "data" / "CT_COVID" / "ct_covid_1.png"
    saved, st = victim.read_bytes(), victim.stat()
    try:
        if same_size:
            _flip_byte(victim)
            assert victim.stat().st_size == st.st_size
        else:
            write_image(victim, size=(30, 26), seed=5)
            assert victim.stat().st_size != st.st_size
        _assert_ingest_planned(ingested)
    finally:
        victim.write_bytes(saved)
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    _assert_nothing_to_do(ingested)


def test_edited_split_list_outside_the_root_reruns_ingest(ingested):
    listing = ingested / "lists" / "val.txt"
    saved, st = listing.read_text(), listing.stat()
    listing.write_text(saved + "# moved nothing yet\n")
    try:
        counts, output = _plan(ingested)
        assert counts == {"ingest": 1, "preprocess": 1}, output[-3000:]
    finally:
        listing.write_text(saved)
        os.utime(listing, ns=(st.st_atime_ns, st.st_mtime_ns))
    _assert_nothing_to_do(ingested)


def test_fixed_skipped_file_is_ingested_after_the_rerun(tmp_path, write_image):
    _dataset(tmp_path / "data", write_image)
    bad = tmp_path / "data" / "CT_NonCOVID" / "ct_noncovid_0.png"
    bad.write_bytes(b"not an image")
    (tmp_path / "config.yaml").write_text(
        CONFIG.format(extra="    split: {fractions: {train: 0.5, val: 0.25, test: 0.25}}"))
    result = _run(tmp_path, MANIFEST)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    skipped_csv = tmp_path / "results" / "mine" / "ingest" / "skipped.csv"
    assert pd.read_csv(skipped_csv)["path"].tolist() == ["CT_NonCOVID/ct_noncovid_0.png"]
    folder_mtime = bad.parent.stat().st_mtime_ns

    write_image(bad, seed=7)  # fixed in place: no folder mtime changes
    assert bad.parent.stat().st_mtime_ns == folder_mtime
    counts, output = _plan(tmp_path, MANIFEST)
    assert counts == {"ingest": 1}, output[-3000:]

    result = _run(tmp_path, MANIFEST)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert pd.read_csv(skipped_csv).empty
    manifest = pd.read_csv(tmp_path / MANIFEST, dtype=str)
    assert "CT_NonCOVID/ct_noncovid_0.png" in set(manifest["source"]) and len(manifest) == 8
    counts, output = _plan(tmp_path, MANIFEST)
    assert "Nothing to be done" in output and not counts, output[-3000:]
