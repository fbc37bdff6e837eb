"""Lung-ultrasound input that is ambiguous or not what its name says: a clear error or the documented reading.

Every error names the file and its cause and leaves no artifact of the ingest
step behind; every reading that must work is checked on its pixel values, and
``files.csv`` tells how each file was read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.data.ingest import FILES_COLUMNS, ingest_dataset, mat_reload_options, read_files, read_manifest
from lungsynth.data.preprocess import preprocess_dataset
from lungsynth.data.readers import clear_cache, load_frame, load_image, scan_lus_mat, scan_lus_videos

H, W = 24, 20
TRAIN_ONLY = {"split": {"fractions": {"train": 1.0}}, "split_by": "video"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _rgb(seed: int = 0) -> np.ndarray:
    """uint8 H x W x 3 with distinct channels."""
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = [10, 20, 30]
    return rgb


def _dataset(root: Path, arrays: dict[str, dict[str, np.ndarray] | bytes]) -> Path:
    """``root`` with one file per entry (a mat dict, or raw bytes) and a scores.csv listing them all (score 1)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in arrays.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            scipy.io.savemat(root / name, content)
    pd.DataFrame({"file": list(arrays), "score": 1}).to_csv(root / "scores.csv", index=False)
    return root


def _ingest(root: Path, out: Path, **spec):
    return ingest_dataset(root, {"format": "lus_mat", **TRAIN_ONLY, **spec}, out / "manifest.csv",
                          out / "skipped.csv", out / "files.csv")


def _assert_fails_cleanly(root: Path, out: Path, match: str, **spec) -> InputDataError:
    with pytest.raises(InputDataError, match=match) as info:
        _ingest(root, out, **spec)
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    return info.value


# --------------------------------------------------------------------------- layouts


def test_rgb_mat_is_one_rgb_frame(tmp_path: Path) -> None:
    rgb = _rgb()
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": {"img": rgb}})
    out = tmp_path / "out"
    manifest = _ingest(root, out)
    assert len(manifest) == 1 and manifest["slice"].tolist() == [0]
    frame = load_image(root, manifest.iloc[0])  # the default reading (auto rule)
    assert frame.shape == (H, W, 3) and np.array_equal(frame, rgb.astype(np.float32))
    files = read_files(out / "files.csv")
    assert list(files.columns) == list(FILES_COLUMNS)
    row = files.iloc[0]
    assert (row["source"], row["slices"], row["frames"], row["layout"], row["resolved_by"]) == (
        "patient01_a.mat", "1", "1", "HWC", "auto rule")
    assert row["how_read"].startswith(".mat variable 'img' uint8 H x W x 3: one RGB frame (auto rule")
    assert mat_reload_options(out / "manifest.csv") == {"patient01_a.mat": {"variable": "img", "mat_layout": "HWC"}}


def test_rgb_mat_with_mat_layout_hwn_is_three_gray_frames(tmp_path: Path) -> None:
    rgb = _rgb()
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": {"img": rgb}})
    out = tmp_path / "out"
    manifest = _ingest(root, out, mat_layout="HWN")
    assert manifest["slice"].tolist() == [0, 1, 2]
    files = read_files(out / "files.csv")
    assert (files["layout"].iloc[0], files["resolved_by"].iloc[0], files["frames"].iloc[0]) == ("HWN", "mat_layout", "3")
    for k in range(3):
        frame = load_frame(root, manifest.iloc[k], variable="img", mat_layout="HWN")
        assert frame.shape == (H, W, 1) and np.array_equal(frame[..., 0], rgb[..., k].astype(np.float32))
    # preprocessing reloads with the layout the scan used (auto would find one frame: frame 1 out of range)
    summary = preprocess_dataset(out / "manifest.csv", root, tmp_path / "pre", size=16, channels=1,
                                 normalise_8bit="none", progress=False)
    assert summary["counts"]["train"]["1"] == 3


def test_ambiguous_4d_needs_mat_layout(tmp_path: Path) -> None:
    clip = np.random.default_rng(1).integers(0, 256, (H, W, 3, 3), dtype=np.uint8)
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": {"video": clip}})
    err = _assert_fails_cleanly(root, tmp_path / "out", r"patient01_a\.mat: variable 'video' \(24x20x3x3\) is ambiguous")
    assert "set the dataset's mat_layout to HWCN or HWNC" in str(err)
    manifest = _ingest(root, tmp_path / "out", mat_layout="HWCN")
    assert len(manifest) == 3
    frame = load_frame(root, manifest.iloc[2], variable="video", mat_layout="HWCN")
    assert np.array_equal(frame, clip[:, :, :, 2].astype(np.float32))
    records, _ = scan_lus_mat(root, mat_layout="HWNC")
    assert len(records) == 3 and records.readings["patient01_a.mat"]["how_read"].endswith("H x W x N x 3: RGB frames (mat_layout HWNC)")
    assert np.array_equal(load_frame(root, records[1], mat_layout="HWNC"), clip[:, :, 1, :].astype(np.float32))


def test_other_shapes_and_settings(tmp_path: Path) -> None:
    gray2d = np.random.default_rng(2).integers(0, 256, (H, W), dtype=np.uint8)
    gray1 = np.random.default_rng(3).integers(0, 256, (H, W, 1), dtype=np.uint8)
    stack = np.random.default_rng(4).integers(0, 256, (H, W, 5), dtype=np.uint8)
    root = _dataset(tmp_path / "ds", {"p_2d.mat": {"img": gray2d}, "p_1.mat": {"img": gray1},
                                      "p_5.mat": {"frames": stack}, "p_rgbn.mat": {"video": np.zeros((H, W, 3, 4))}})
    records, _ = scan_lus_mat(root, split_by="video")
    counts = pd.DataFrame(records).groupby("source").size().to_dict()
    assert counts == {"p_2d.mat": 1, "p_1.mat": 1, "p_5.mat": 5, "p_rgbn.mat": 4}
    by_source = {r["source"]: r for r in records}
    assert np.array_equal(load_frame(root, by_source["p_2d.mat"])[..., 0], gray2d.astype(np.float32))
    assert np.array_equal(load_frame(root, by_source["p_1.mat"]), gray1.astype(np.float32))
    layouts = {s: r["layout"] for s, r in records.readings.items()}
    assert layouts == {"p_1.mat": "HWC", "p_2d.mat": "HW", "p_5.mat": "HWN", "p_rgbn.mat": "HWCN"}
    assert all(r["resolved_by"] == "" for r in records.readings.values())
    # a set layout applies to the arrays with its number of axes; the others follow the auto rule
    records, _ = scan_lus_mat(root, mat_layout="HWN", split_by="video")
    assert pd.DataFrame(records).groupby("source").size().to_dict() == counts
    with pytest.raises(InputDataError, match=r"p_5\.mat: variable 'frames' \(24x20x5\) does not fit mat_layout HWC"):
        scan_lus_mat(root, mat_layout="HWC")
    with pytest.raises(ConfigError, match="mat_layout must be one of"):
        scan_lus_mat(root, mat_layout="NHWC")


def test_largest_array_prefers_clips_over_single_frames(tmp_path: Path) -> None:
    clip = np.random.default_rng(5).integers(0, 256, (H, W, 4), dtype=np.uint8)
    root = _dataset(tmp_path / "ds", {"p.mat": {"frames": clip, "background": np.zeros((100, 100), np.uint8)}})
    records, _ = scan_lus_mat(root)
    assert len(records) == 4 and records.readings["p.mat"]["variable"] == "frames"


# --------------------------------------------------------------------------- not what the name says


def test_text_file_named_mat(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": b"file,score\nsomething,1\nthis is not MATLAB data\n"})
    err = _assert_fails_cleanly(root, tmp_path / "out", r"patient01_a\.mat: not a MATLAB \.mat file: it is text")
    assert "IndexError" not in str(err) and "savemat" in str(err)


def test_binary_junk_named_mat(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": bytes(range(1, 256)) * 4})
    _assert_fails_cleanly(root, tmp_path / "out",
                          r"patient01_a\.mat: not a MATLAB \.mat file: no 'MATLAB 5\.0 MAT-file' header")


def test_truncated_mat_keeps_saying_cannot_read(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mat"
    scipy.io.savemat(whole, {"frames": np.random.default_rng(0).integers(0, 256, (H, W, 4), dtype=np.uint8)})
    data = whole.read_bytes()
    root = _dataset(tmp_path / "ds", {"a.mat": data[:100], "b.mat": data[: len(data) // 2]})
    err = _assert_fails_cleanly(root, tmp_path / "out", r"a\.mat: cannot read \.mat file: truncated \(100 bytes")
    assert "re-export" in str(err)
    pd.DataFrame({"file": ["b.mat"], "score": [1]}).to_csv(root / "scores.csv", index=False)
    _assert_fails_cleanly(root, tmp_path / "out", r"b\.mat: cannot read \.mat file, truncated or corrupt")


def test_zero_byte_mat(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": b""})
    _assert_fails_cleanly(root, tmp_path / "out", r"patient01_a\.mat: file is empty \(0 bytes\)")
    # skipped when asked, with the same reason
    root2 = _dataset(tmp_path / "ds2", {"patient01_a.mat": b"", "patient02_a.mat": {"img": _rgb()}})
    out = tmp_path / "out2"
    _ingest(root2, out, on_bad_file="skip")
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped.to_dict("records") == [{"path": "patient01_a.mat", "problem": "file is empty (0 bytes)"}]
    assert read_files(out / "files.csv")["source"].tolist() == ["patient02_a.mat"]


@pytest.mark.parametrize("name", ["patient01_a.mp4", "patient01_a.gif"])
def test_zero_byte_video(tmp_path: Path, name: str) -> None:
    root = tmp_path / "v"
    root.mkdir()
    (root / name).write_bytes(b"")
    pd.DataFrame({"path": [name], "lung_severity_score": [1]}).to_csv(root / "labels.csv", index=False)
    out = tmp_path / "out"
    with pytest.raises(InputDataError, match=rf"{name.replace('.', r'[.]')}: file is empty \(0 bytes\)"):
        ingest_dataset(root, {"format": "lus_video", **TRAIN_ONLY}, out / "manifest.csv", out / "skipped.csv",
                       out / "files.csv")
    assert not out.exists()
    with pytest.raises(InputDataError, match="file is empty"):
        scan_lus_videos(root)


# --------------------------------------------------------------------------- files.csv


def test_files_csv_lists_each_file_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    root = _dataset(tmp_path / "ds", {
        "patient01_a.mat": {"video": rng.integers(0, 256, (H, W, 3, 6), dtype=np.uint8)},
        "patient02_a.mat": {"frames": rng.integers(0, 256, (H, W, 5), dtype=np.uint8)},
        "patient03_a.mat": {"img": _rgb()},
    })
    out = tmp_path / "out"
    manifest = _ingest(root, out, frame_stride=2)
    assert list(read_manifest(out / "manifest.csv").columns) == [
        "id", "patient", "class", "split", "format", "unit", "source", "slice", "mask", "lung_mask"]
    files = pd.read_csv(out / "files.csv", dtype=str, keep_default_na=False)
    assert files.to_dict("records") == [
        {"source": "patient01_a.mat", "format": "lus_mat", "slices": "3", "frames": "6",
         "how_read": ".mat variable 'video' uint8 H x W x 3 x N: RGB frames", "variable": "video", "layout": "HWCN",
         "resolved_by": ""},
        {"source": "patient02_a.mat", "format": "lus_mat", "slices": "3", "frames": "5",
         "how_read": ".mat variable 'frames' uint8 H x W x N: gray frames", "variable": "frames", "layout": "HWN",
         "resolved_by": ""},
        {"source": "patient03_a.mat", "format": "lus_mat", "slices": "1", "frames": "1",
         "how_read": ".mat variable 'img' uint8 H x W x 3: one RGB frame (auto rule; mat_layout: HWN reads it as 3 "
                     "gray frames)", "variable": "img", "layout": "HWC", "resolved_by": "auto rule"},
    ]
    assert len(manifest) == 7
    assert sorted(p.name for p in out.iterdir()) == ["files.csv", "manifest.csv", "skipped.csv"]


def test_files_csv_default_reading_for_image_readers(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((16, 16), 40 * k + 10, np.uint8)).save(root / cls / f"{cls}{k}.png")
    out = tmp_path / "out"
    ingest_dataset(root, {"format": "image_folder", "classes": {"a": "a", "b": "b"},
                          "split": {"fractions": {"train": 1.0}}}, out / "manifest.csv", out / "skipped.csv",
                   out / "files.csv")
    files = read_files(out / "files.csv")
    assert files["source"].tolist() == ["a/a0.png", "a/a1.png", "b/b0.png", "b/b1.png"]
    assert set(files["how_read"]) == {"image file via Pillow (8-bit)"}
    assert set(files["slices"]) == {"1"} and set(files["layout"]) == {""}
    assert mat_reload_options(out / "manifest.csv") == {}


def test_preprocess_refuses_files_csv_out_of_step(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"patient01_a.mat": {"img": _rgb()}})
    out = tmp_path / "out"
    _ingest(root, out)
    files = read_files(out / "files.csv")
    files.iloc[0:0].to_csv(out / "files.csv", index=False)
    with pytest.raises(InputDataError, match=r"files\.csv: has no reading of 1 \.mat file.*patient01_a\.mat"):
        preprocess_dataset(out / "manifest.csv", root, tmp_path / "pre", size=16, progress=False)
    assert not (tmp_path / "pre").exists()


def test_mat_clips_behind_a_link_out_of_the_dataset_are_read_only_with_follow_links_outside(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    clip = np.random.default_rng(3).integers(0, 256, (H, W, 5), dtype=np.uint8)
    scipy.io.savemat(outside / "a.mat", {"frames": clip})
    root = _dataset(tmp_path / "data", {"b.mat": {"frames": clip}})
    (root / "more").symlink_to(outside, target_is_directory=True)
    pd.DataFrame({"file": ["b.mat", "more/a.mat"], "score": 1}).to_csv(root / "scores.csv", index=False)
    _assert_fails_cleanly(root, tmp_path / "off", r"more/a\.mat.*missing")  # the link is not followed by default
    manifest = _ingest(root, tmp_path / "on", follow_links_outside=True)
    assert sorted(set(manifest["source"])) == ["b.mat", "more/a.mat"] and len(manifest) == 10
