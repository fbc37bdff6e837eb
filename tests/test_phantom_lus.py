"""Lung-ultrasound phantom: layout, determinism, geometry, findings by score, atomic writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from lungsynth.phantom import lus
from lungsynth.phantom.lus import fan_geometry, fan_mask, generate_clip, score_table, write_phantom_lus

H, W = 128, 160


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lus") / "ds"
    write_phantom_lus(out, n_patients=4, areas_per_patient=3, frames=5, height=H, width=W, seed=3)
    return out


def _clip_of(mat_path: Path) -> np.ndarray:
    """(N, H, W) uint8 of either layout."""
    data = {k: v for k, v in scipy.io.loadmat(mat_path).items() if not k.startswith("__")}
    if "video" in data:
        v = data["video"]
        assert (v[:, :, 0] == v[:, :, 1]).all() and (v[:, :, 1] == v[:, :, 2]).all()
        return v[:, :, 0].transpose(2, 0, 1)
    return data["frames"].transpose(2, 0, 1)


def test_layout_and_tables(phantom: Path) -> None:
    scores = pd.read_csv(phantom / "mat" / "scores.csv")
    labels = pd.read_csv(phantom / "labels.csv")
    assert list(scores.columns) == ["file", "score"]
    assert list(labels.columns) == ["path", "label", "lung_severity_score", "probe", "n_frames", "height", "width",
                                    "license"]
    assert len(scores) == len(labels) == 12
    assert scores["file"].iloc[0] == "patient01_exam1_area01.mat"
    assert sorted(p.name for p in (phantom / "mat").glob("*.mat")) == sorted(scores["file"])
    assert set(scores["score"]) == {0, 1, 2, 3}
    patients = scores.assign(patient=scores["file"].str[:9]).groupby("score")["patient"].nunique()
    assert (patients >= 2).all()
    for (_, srow), (_, lrow) in zip(scores.iterrows(), labels.iterrows()):
        assert Path(lrow["path"]).stem == Path(srow["file"]).stem
        assert lrow["lung_severity_score"] == srow["score"]
        assert lrow["label"] == ("COVID-19" if srow["score"] > 0 else "healthy")
        assert (lrow["probe"], lrow["license"]) == ("convex", "synthetic")
        assert (lrow["n_frames"], lrow["height"], lrow["width"]) == (5, H, W)
        assert (phantom / lrow["path"]).is_file()
    assert not [p for p in phantom.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_mat_layouts(phantom: Path) -> None:
    first = scipy.io.loadmat(phantom / "mat" / "patient01_exam1_area01.mat")
    second = scipy.io.loadmat(phantom / "mat" / "patient01_exam1_area02.mat")
    assert first["video"].shape == (H, W, 3, 5) and first["video"].dtype == np.uint8
    assert second["frames"].shape == (H, W, 5) and second["frames"].dtype == np.uint8
    assert "frames" not in first and "video" not in second


def test_outside_fan_is_black_and_inside_is_not(phantom: Path) -> None:
    mask = fan_mask(H, W)
    for mat in sorted((phantom / "mat").glob("*.mat"))[:4]:
        clip = _clip_of(mat)
        assert clip[:, ~mask].max() == 0
        assert clip[:, mask].mean() > 20
        top, bottom, left, right = fan_geometry(H, W).bbox()
        assert 0 <= top and bottom <= H and 0 <= left and right <= W


def test_frames_change_over_time(phantom: Path) -> None:
    clip = _clip_of(phantom / "mat" / "patient01_exam1_area01.mat").astype(float)
    assert np.abs(np.diff(clip, axis=0)).mean() > 1.0  # sliding + speckle decorrelation


def test_videos_decode_with_frame_count(phantom: Path) -> None:
    import imageio.v3 as iio

    labels = pd.read_csv(phantom / "labels.csv")
    for rel in labels["path"][:3]:
        frames = iio.imread(phantom / rel, plugin="pyav" if rel.endswith(".mp4") else "pillow")
        assert frames.shape[0] == 5 and frames.shape[1:3] == (H, W)
        mat = _clip_of(phantom / "mat" / (Path(rel).stem + ".mat")).astype(float)
        gray = frames[..., 0].astype(float) if frames.ndim == 4 else frames.astype(float)
        assert np.abs(gray - mat).mean() < 8  # lossy, but the same clip


def test_deterministic_from_seed(tmp_path: Path) -> None:
    kw = dict(n_patients=2, areas_per_patient=2, frames=2, height=64, width=96)
    t1 = write_phantom_lus(tmp_path / "a", seed=5, **kw)
    t2 = write_phantom_lus(tmp_path / "b", seed=5, **kw)
    write_phantom_lus(tmp_path / "c", seed=6, **kw)
    assert t1.equals(t2)
    for name in t1["file"]:
        a, b, c = (_clip_of(tmp_path / d / "mat" / name) for d in "abc")
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
    assert (tmp_path / "a" / "labels.csv").read_text() == (tmp_path / "b" / "labels.csv").read_text()


def test_score_table_balanced() -> None:
    table = score_table(8, 4, seed=0)
    assert table.shape == (8, 4)
    counts = np.bincount(table.ravel(), minlength=4)
    assert (counts == 8).all()
    for n_patients, areas in ((4, 2), (5, 3), (8, 1)):
        t = score_table(n_patients, areas, seed=1)
        for s in range(4):
            assert (t == s).any(axis=1).sum() >= 2


def _roi_stats(clip: np.ndarray) -> tuple[float, float, float]:
    """Mean, lateral (column-mean) and axial (row-mean) variability of the deep central lung region."""
    g = fan_geometry(H, W)
    f = clip.astype(float).mean(0)
    top, bot = int(g.apex_row + g.r_min + 0.45 * g.depth), int(g.apex_row + g.r_min + 0.85 * g.depth)
    c, hw = int(g.centre_col), int(0.25 * W)
    roi = f[top:bot, c - hw:c + hw]
    return roi.mean(), roi.mean(0).std() / roi.mean(), roi.mean(1).std() / roi.mean()


def test_findings_by_score() -> None:
    stats = {s: np.mean([_roi_stats(generate_clip(s, frames=2, height=H, width=W,
                                                   rng=np.random.default_rng([11, s, k]))) for k in range(4)], axis=0)
             for s in range(4)}
    mean, lateral, axial = ({s: stats[s][i] for s in stats} for i in range(3))
    assert lateral[1] > 1.5 * lateral[0] and lateral[2] > 1.5 * lateral[0]  # vertical B-lines vs A-lines
    assert axial[0] > 2 * axial[2]  # horizontal A-lines, erased by confluent B-lines
    assert mean[2] > 1.5 * mean[0] and mean[3] > mean[0]  # white / bright lung


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ds"
    calls = []

    def failing(path, frames):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(path, frames)

    real = lus._write_video
    monkeypatch.setattr(lus, "_write_video", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_phantom_lus(out, n_patients=1, areas_per_patient=2, frames=2, height=64, width=64)
    assert list(tmp_path.iterdir()) == []
    # an existing dataset survives a failed rewrite
    monkeypatch.setattr(lus, "_write_video", real)
    write_phantom_lus(out, n_patients=1, areas_per_patient=2, frames=2, height=64, width=64)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    calls.clear()
    monkeypatch.setattr(lus, "_write_video", failing)
    with pytest.raises(RuntimeError):
        write_phantom_lus(out, n_patients=1, areas_per_patient=2, frames=2, height=64, width=64, seed=9)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_phantom_lus(tmp_path / "x", height=65)
    with pytest.raises(ValueError, match="n_patients"):
        write_phantom_lus(tmp_path / "x", n_patients=0)


def test_read_folder_and_reader_settings_read_what_the_writer_wrote(phantom: Path) -> None:
    from lungsynth.data.readers import scan_dataset
    from lungsynth.phantom import is_phantom, phantom_read_folder, phantom_reader_settings

    spec = {"format": "phantom_lus"}
    assert is_phantom(spec)
    settings = phantom_reader_settings(spec)
    assert settings["format"] == "lus_mat"
    records, skipped = scan_dataset(phantom / phantom_read_folder(spec), {**spec, **settings})
    assert skipped == []
    scores = pd.read_csv(phantom / "mat" / "scores.csv")
    frames = 5  # the `phantom` fixture's frames per clip
    assert len(records) == frames * len(scores)
    by_clip = {Path(r["source"]).name: r["class"] for r in records}
    assert by_clip == {file: str(score) for file, score in zip(scores["file"], scores["score"])}
