"""Lung-ultrasound readers (.mat clips, videos), frame reload, sector crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from lungsynth.errors import ConfigError, InputDataError
from lungsynth.phantom.lus import fan_geometry, generate_clip, write_phantom_lus
from lungsynth.data.readers import (
    FORMATS,
    RECORD_COLUMNS,
    clear_cache,
    load_frame,
    load_image,
    sample_frames,
    scan_dataset,
    scan_lus_mat,
    scan_lus_videos,
)
from lungsynth.data.sector import center_pad, crop_to_sector, sector_bbox
from lungsynth.data.splits import assign_splits, check_no_leakage


def _clip(n: int = 6, h: int = 24, w: int = 20, seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W) with frame k having value 10 * k + 5 in its top-left pixel."""
    clip = np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)
    clip[:, 0, 0] = 10 * np.arange(n) + 5
    return clip


def _write_mat(path: Path, clip: np.ndarray, layout: str = "frames", extra: dict | None = None) -> Path:
    """Write (N, H, W) ``clip`` as 'frames' (H W N), 'video' (H W 3 N) or 'nhwc' (H W N 3, variable 'cine')."""
    hwn = clip.transpose(1, 2, 0)
    if layout == "frames":
        mdict = {"frames": hwn}
    elif layout == "video":
        mdict = {"video": np.repeat(hwn[:, :, None, :], 3, axis=2)}
    else:
        mdict = {"cine": np.repeat(hwn[..., None], 3, axis=3).astype(np.float64) / 255.0}
    mdict.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, mdict)
    return path


def _scores(root: Path, rows: dict[str, object], name: str = "scores.csv") -> None:
    pd.DataFrame({"file": list(rows), "score": list(rows.values())}).to_csv(root / name, index=False)


@pytest.fixture
def mat_root(tmp_path: Path) -> Path:
    root = tmp_path / "mat"
    _write_mat(root / "patient01_exam1_area01.mat", _clip(6), "video")
    _write_mat(root / "patient01_exam1_area02.mat", _clip(5, seed=1), "frames")
    _write_mat(root / "sub" / "patient02_exam1_area01.mat", _clip(4, seed=2), "nhwc")
    _scores(root, {"patient01_exam1_area01.mat": 0, "patient01_exam1_area02.mat": 2,
                   "sub/patient02_exam1_area01.mat": 3})
    return root


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_scan_mat_layouts_and_reload(mat_root: Path) -> None:
    records, skipped = scan_lus_mat(mat_root)
    assert skipped == []
    assert len(records) == 6 + 5 + 4
    assert all(tuple(r) == RECORD_COLUMNS for r in records)
    first = records[0]
    assert first == {"id": "patient01_exam1_area01_f0000", "patient": "patient01", "class": "0", "format": "lus_mat",
                     "unit": "8bit", "source": "patient01_exam1_area01.mat", "slice": 0, "mask": "", "lung_mask": ""}
    by_source = {r["source"]: r for r in records[::-1]}
    assert by_source["sub/patient02_exam1_area01.mat"]["patient"] == "patient02"
    assert by_source["sub/patient02_exam1_area01.mat"]["class"] == "3"
    # reload: H W 3 N -> C = 3; H W N -> C = 1; float [0, 1] H W N 3 -> C = 3, scaled to 0..255
    rgb = load_frame(mat_root, records[3])
    assert rgb.shape == (24, 20, 3) and rgb.dtype == np.float32 and rgb[0, 0, 0] == 35
    gray = load_image(mat_root, next(r for r in records if r["id"] == "patient01_exam1_area02_f0004"))
    assert gray.shape == (24, 20, 1) and gray[0, 0, 0] == 45
    assert np.array_equal(gray[..., 0], _clip(5, seed=1)[4].astype(np.float32))
    nhwc = load_frame(mat_root, next(r for r in records if r["id"] == "patient02_exam1_area01_f0002"))
    assert nhwc.shape == (24, 20, 3) and nhwc[0, 0, 0] == 25


def test_configured_variable(tmp_path: Path) -> None:
    big = np.zeros((30, 30, 9), np.uint8)
    _write_mat(tmp_path / "patient07_exam1_area01.mat", _clip(3), "frames", extra={"overlay": big})
    _scores(tmp_path, {"patient07_exam1_area01.mat": 1})
    assert len(scan_lus_mat(tmp_path)[0]) == 9  # the largest video-shaped array by default
    # 24x20x3 is one RGB frame by the auto rule; this clip is 3 gray frames, so say so (mat_layout)
    records, _ = scan_lus_mat(tmp_path, variable="frames", mat_layout="HWN")
    assert len(records) == 3
    assert load_frame(tmp_path, records[2], variable="frames", mat_layout="HWN")[0, 0, 0] == 25
    with pytest.raises(InputDataError, match="variable 'cine' not found.*frames 24x20x3"):
        scan_lus_mat(tmp_path, variable="cine")


def test_scan_dataset_dispatch(mat_root: Path) -> None:
    assert {"lus_mat", "lus_video"} <= set(FORMATS)
    records, _ = scan_dataset(mat_root, {"format": "lus_mat", "frame_stride": 2, "max_frames": None,
                                         "scores": [0, 2, 3], "split_by": "video"})
    assert [r["slice"] for r in records if r["source"] == "patient01_exam1_area01.mat"] == [0, 2, 4]
    assert records[0]["patient"] == "patient01_exam1_area01"


def test_frame_stride_and_cap(mat_root: Path) -> None:
    assert sample_frames(10) == list(range(10))
    assert sample_frames(10, 3) == [0, 3, 6, 9]
    assert sample_frames(100, 1, 5) == [0, 25, 50, 74, 99]
    assert sample_frames(3, 1, 5) == [0, 1, 2]
    records, _ = scan_lus_mat(mat_root, frame_stride=2, max_frames=2)
    slices = {}
    for r in records:
        slices.setdefault(r["source"], []).append(r["slice"])
    assert slices == {"patient01_exam1_area01.mat": [0, 4], "patient01_exam1_area02.mat": [0, 4],
                      "sub/patient02_exam1_area01.mat": [0, 2]}
    with pytest.raises(ConfigError, match="frame_stride"):
        scan_lus_mat(mat_root, frame_stride=0)


def test_bad_mat_files(mat_root: Path) -> None:
    scipy.io.savemat(mat_root / "patient05_exam1_area01.mat", {"meta": np.arange(5), "small": np.zeros((4, 4, 2))})
    data = (mat_root / "patient01_exam1_area02.mat").read_bytes()
    (mat_root / "patient06_exam1_area01.mat").write_bytes(data[: len(data) // 2])
    _scores(mat_root, {"patient01_exam1_area01.mat": 0, "patient05_exam1_area01.mat": 1,
                       "patient06_exam1_area01.mat": 1, "patient01_exam1_area02.mat": 7})
    with pytest.raises(InputDataError, match=r"patient01_exam1_area02\.mat: score 7 is not one of"):
        scan_lus_mat(mat_root)
    with pytest.raises(InputDataError, match=r"patient05_exam1_area01\.mat: no video-shaped array .*meta 1x5.*small 4x4x2"):
        scan_lus_mat(mat_root, scores=range(8))
    records, skipped = scan_lus_mat(mat_root, on_bad_file="skip")
    assert {s["path"] for s in skipped} == {"patient01_exam1_area02.mat", "patient05_exam1_area01.mat",
                                            "patient06_exam1_area01.mat"}
    assert "cannot read .mat" in next(s["problem"] for s in skipped if s["path"] == "patient06_exam1_area01.mat")
    assert {r["source"] for r in records} == {"patient01_exam1_area01.mat"}  # unlisted sub/ file ignored
    _scores(mat_root, {"patient06_exam1_area01.mat": 1})
    with pytest.raises(InputDataError, match=r"patient06_exam1_area01\.mat: cannot read \.mat"):
        scan_lus_mat(mat_root)


def test_scores_csv_missing_file(mat_root: Path) -> None:
    _scores(mat_root, {"patient01_exam1_area01.mat": 0, "patient09_exam1_area01.mat": 1})
    with pytest.raises(InputDataError, match=r"scores\.csv: lists 'patient09_exam1_area01\.mat', which is missing"):
        scan_lus_mat(mat_root, on_bad_file="skip")
    with pytest.raises(InputDataError, match="scores CSV not found"):
        scan_lus_mat(mat_root, scores_csv="nope.csv")


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lusv") / "ds"
    write_phantom_lus(root, n_patients=4, areas_per_patient=2, frames=4, height=64, width=80, seed=1)
    return root


def test_scan_videos_and_reload(video_root: Path) -> None:
    records, skipped = scan_lus_videos(video_root, max_frames=2)
    labels = pd.read_csv(video_root / "labels.csv")
    assert skipped == [] and len(records) == 2 * len(labels)
    assert records[0]["format"] == "lus_video" and records[1]["slice"] == 3
    assert records[0]["source"] == labels["path"][0] and records[0]["class"] == str(labels["lung_severity_score"][0])
    frame = load_image(video_root, records[1])
    assert frame.shape == (64, 80, 3) and frame.dtype == np.float32
    mat = scipy.io.loadmat(video_root / "mat" / "patient01_exam1_area01.mat")["video"][:, :, 0, 3]
    assert np.abs(frame[..., 0] - mat).mean() < 8
    # scan_dataset dispatch and the files= filter
    via_spec, _ = scan_dataset(video_root, {"format": "lus_video", "max_frames": 1})
    assert len(via_spec) == len(labels)
    subset, _ = scan_lus_videos(video_root, files=[labels["path"][2]])
    assert {r["source"] for r in subset} == {labels["path"][2]}


def test_bad_videos(video_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "v"
    (root / "clips").mkdir(parents=True)
    good = video_root / "videos" / "patient01_exam1_area01.mp4"
    (root / "clips" / "patient01_a.mp4").write_bytes(good.read_bytes())
    (root / "clips" / "patient02_b.MP4").write_bytes(b"\x00garbage, not a video" * 50)
    rows = [("clips/patient01_a.mp4", "1"), ("clips/patient02_b.MP4", "2"), ("clips/patient03_c.mp4", "")]
    (root / "clips" / "patient03_c.mp4").write_bytes(good.read_bytes())
    pd.DataFrame(rows, columns=["path", "lung_severity_score"]).to_csv(root / "labels.csv", index=False)
    with pytest.raises(InputDataError, match=r"patient02_b\.MP4: cannot decode video"):
        scan_lus_videos(root)
    records, skipped = scan_lus_videos(root, on_bad_file="skip")
    assert [s["path"] for s in skipped] == ["clips/patient02_b.MP4"]
    assert {r["source"] for r in records} == {"clips/patient01_a.mp4"}  # empty score row left out
    with pytest.raises(InputDataError, match=r"patient01_a\.mp4: score 1 is not one of"):
        scan_lus_videos(root, scores=(0, 2), on_bad_file="error", files=["clips/patient01_a.mp4"])
    rows.append(("clips/gone.mp4", "0"))
    pd.DataFrame(rows, columns=["path", "lung_severity_score"]).to_csv(root / "labels.csv", index=False)
    with pytest.raises(InputDataError, match=r"labels\.csv: lists 'clips/gone\.mp4', which is missing"):
        scan_lus_videos(root, on_bad_file="skip")


def test_splits_by_patient_or_video_never_by_frame(tmp_path: Path) -> None:
    rows = {}
    for p in range(1, 7):
        for a in (1, 2):
            name = f"patient{p:02d}_exam1_area{a:02d}.mat"
            _write_mat(tmp_path / name, _clip(4, 16, 16, seed=p * 10 + a), "frames")
            rows[name] = p % 2  # one score per patient: check_patient_classes requires it
    _scores(tmp_path, rows)
    by_patient = pd.DataFrame(scan_lus_mat(tmp_path)[0])
    assert by_patient["patient"].nunique() == 6
    by_video = pd.DataFrame(scan_lus_mat(tmp_path, split_by="video")[0])
    assert by_video["patient"].nunique() == 12
    for df in (by_patient, by_video):
        split = assign_splits(df, seed=0)
        check_no_leakage(split)
        assert (split.groupby("source")["split"].nunique() == 1).all()  # no clip cut into frames
    split = assign_splits(by_patient, seed=0)
    assert (split.assign(p=split["source"].str[:9]).groupby("p")["split"].nunique() == 1).all()
    with pytest.raises(ConfigError, match="split_by"):
        scan_lus_mat(tmp_path, split_by="frame")


def test_patient_regex(tmp_path: Path) -> None:
    _write_mat(tmp_path / "Reg_pat3Image_1.mat", _clip(2), "frames")
    _scores(tmp_path, {"Reg_pat3Image_1.mat": 0})
    assert scan_lus_mat(tmp_path)[0][0]["patient"] == "Reg_pat3Image_1"  # default regex does not match
    assert scan_lus_mat(tmp_path, patient_regex=r"_(?P<patient>pat\d+)")[0][0]["patient"] == "pat3"


# --------------------------------------------------------------------------- sector crop


def test_sector_bbox_on_phantom() -> None:
    import time

    for h, w in ((192, 224), (256, 256)):
        geom = fan_geometry(h, w)
        for score in range(4):
            frame = generate_clip(score, frames=1, height=h, width=w, rng=np.random.default_rng([2, score]))[0]
            box = sector_bbox(frame)
            assert np.allclose(box, geom.bbox(), atol=3), (box, geom.bbox())
            rgb = np.repeat(frame[..., None].astype(np.float32), 3, axis=2)
            rgb[5:15, -30:-5] = [255, 200, 0]  # coloured marker in the corner
            assert np.allclose(sector_bbox(rgb), geom.bbox(), atol=3)
            assert crop_to_sector(rgb).shape == (box[1] - box[0], box[3] - box[2], 3)
    frame = generate_clip(2, frames=1, height=256, width=256, rng=np.random.default_rng(0))[0].astype(np.float32)
    padded = np.zeros((300, 320), np.float32)
    padded[20:276, 40:296] = frame
    padded[280:295, 5:60] = 255  # text label below the sector, separate from it
    top, bottom, left, right = sector_bbox(padded)
    assert abs(top - 23) <= 3 and bottom <= 276 and left >= 40 and right <= 296
    best = min(_timed(sector_bbox, frame[..., None]) for _ in range(5))
    assert best < 0.05  # about 4 ms on an idle core; generous for loaded CI machines
    assert sector_bbox(np.zeros((10, 12))) == (0, 10, 0, 12)


def _timed(fn, *args) -> float:
    import time

    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def test_center_pad() -> None:
    img = np.ones((3, 5, 2), np.float32)
    out = center_pad(img, (7, 6))
    assert out.shape == (7, 6, 2) and out.sum() == img.sum()
    assert out[2:5, 0:5].all() and not out[:2].any()
    cropped = center_pad(np.arange(30).reshape(5, 6), (3, 4), fill=-1)
    assert cropped.tolist() == [[7, 8, 9, 10], [13, 14, 15, 16], [19, 20, 21, 22]]


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_pocus_mat(realdata_dir: Path) -> None:
    root = realdata_dir / "lus-pocus" / "mat"
    records, skipped = scan_lus_mat(root)
    assert skipped == []
    df = pd.DataFrame(records)
    counts = df.groupby("source").size().to_dict()
    assert counts == {"patient01_exam1_area03.mat": 60, "patient02_exam1_area04.mat": 83,
                      "patient03_exam1_area05.mat": 41, "patient04_exam1_area06.mat": 40}
    assert df.groupby("source")["class"].first().to_dict() == {
        "patient01_exam1_area03.mat": "0", "patient02_exam1_area04.mat": "1",
        "patient03_exam1_area05.mat": "2", "patient04_exam1_area06.mat": "3"}
    first = load_image(root, records[0])
    assert first.shape == (165, 165, 3)
    gray = load_image(root, df[df["source"] == "patient04_exam1_area06.mat"].iloc[5])
    assert gray.shape == (230, 230, 1) and 0 <= gray.min() and gray.max() <= 255


@pytest.mark.realdata
def test_real_pocus_videos_and_crop(realdata_dir: Path) -> None:
    root = realdata_dir / "lus-pocus"
    labels = pd.read_csv(root / "labels.csv")
    wanted = ["pocus_videos/convex/Reg-Atlas-alines.gif", "pocus_videos/convex/Reg_liftl_pneucase3_clip1.mp4",
              "pocus_videos/convex/Reg_pat1Image_133232.mpeg", "pocus_videos/convex/Cov_denault_proposedUS_vid11.mov"]
    records, skipped = scan_lus_videos(root, files=wanted, max_frames=3, split_by="video")
    assert skipped == []
    df = pd.DataFrame(records)
    assert sorted(df["source"].unique()) == sorted(wanted)
    expected = labels.set_index("path")
    for rec in records[::3]:
        row = expected.loc[rec["source"]]
        assert rec["class"] == str(row["lung_severity_score"])
        frame = load_image(root, rec)
        assert frame.shape[:2] == (row["height"], row["width"])
    last = df[df["source"] == wanted[1]]["slice"].max()
    assert abs(last - (expected.loc[wanted[1], "n_frames"] - 1)) <= 2
    # sector crop of a frame with black margins: smaller, keeps the bright pixels
    frame = load_image(root, df[df["source"] == wanted[3]].iloc[0])
    top, bottom, left, right = sector_bbox(frame)
    gray = frame.mean(axis=2)
    assert (bottom - top) * (right - left) < gray.size
    assert (gray[top:bottom, left:right] > 30).sum() >= 0.9 * (gray > 30).sum()


def test_mixed_rgb_and_rgba_frames_are_one_video():
    """POCUS GIFs decode with an RGB first frame and RGBA later frames; they must not be rejected."""
    from lungsynth.data.readers.lus_video import uniform_channels

    rgb = np.full((6, 5, 3), 10, dtype=np.uint8)
    rgba = np.full((6, 5, 4), 20, dtype=np.uint8)
    gray = np.full((6, 5), 30, dtype=np.uint8)
    frames = uniform_channels([rgb, rgba, gray])
    assert {f.shape for f in frames} == {(6, 5, 3)}
    assert frames[1][0, 0].tolist() == [20, 20, 20] and frames[2][0, 0].tolist() == [30, 30, 30]
