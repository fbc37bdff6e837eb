"""Segmentation-conditioned data: label maps, derived lung masks, cached pairs, paired augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lungsynth.errors import InputDataError
from lungsynth.data.ingest import ingest_dataset, read_manifest
from lungsynth.phantom.ct import write_phantom_ct
from lungsynth.data.preprocess import preprocess_slice
from lungsynth.data.readers import load_image, load_mask, scan_nifti
from lungsynth.data.segmentation import augment_pairs, composite, derive_lung_mask, label_map, LABEL_NAMES, load_segmentation_split, lung_mask_image, lung_region, N_LABELS, one_hot, pad_resize_labels, preprocess_segmentation
from lungsynth.metrics.segmentation import mask_dice as dice

NIFTI_SPEC = {"format": "nifti", "labels_csv": "../labels.csv", "split": {"seed": 0}}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> dict:
    """Phantoms (6 patients x 5 slices at 64 px, 4 x 4 at 128 px) and a manifest of the 64-px one."""
    base = tmp_path_factory.mktemp("seg_phantom")
    write_phantom_ct(base / "p64", n_patients=6, covid_fraction=0.5, slices_per_patient=5, size=64, seed=3)
    write_phantom_ct(base / "p128", n_patients=4, covid_fraction=0.5, slices_per_patient=4, size=128, seed=5)
    manifest = base / "manifest.csv"
    ingest_dataset(base / "p64" / "nifti", NIFTI_SPEC, manifest, base / "skipped.csv")
    return {"base": base, "root": base / "p64" / "nifti", "manifest": manifest}


def _phantom_slices(root: Path):
    """(id, class, lung-window image (H, W), true lung bool (H, W), infection uint8 (H, W)) per slice."""
    records, _ = scan_nifti(root, labels_csv="../labels.csv")
    for rec in records:
        image = lung_mask_image(load_image(root, rec), "HU")
        yield rec["id"], rec["class"], image, load_mask(root, rec, "lung_mask") > 0, load_mask(root, rec, "mask")


# --------------------------------------------------------------------------- label maps


def test_label_map_convention():
    infection = np.array([[0, 1, 2], [0, 0, 2]], dtype=np.uint8)
    lung = np.array([[0, 1, 1], [1, 0, 0]], dtype=np.uint8) * 255  # any nonzero value is lung
    out = label_map(infection, lung)
    assert out.dtype == np.uint8
    # lesions outside the lung mask still count as lesions (2 = ground-glass, 3 = consolidation)
    assert out.tolist() == [[0, 2, 3], [1, 0, 3]]
    assert label_map(infection, None).tolist() == [[0, 2, 3], [0, 0, 3]]
    assert N_LABELS == len(LABEL_NAMES) == 4 and LABEL_NAMES[3] == "consolidation"


def test_label_map_rejects_unknown_values_and_shapes():
    with pytest.raises(ValueError, match=r"\[3, 7\]"):
        label_map(np.array([[0, 3], [7, 1]], dtype=np.uint8), None)
    with pytest.raises(ValueError, match="shape"):
        label_map(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_one_hot_sums_to_one_and_inverts():
    labels = torch.tensor([[[0, 1], [2, 3]], [[3, 3], [0, 1]]], dtype=torch.uint8)
    hot = one_hot(labels)
    assert hot.shape == (2, 4, 2, 2) and hot.dtype == torch.float32
    assert torch.equal(hot.sum(dim=1), torch.ones(2, 2, 2))
    assert torch.equal(hot.argmax(dim=1), labels.long())
    single = one_hot(labels[0])
    assert single.shape == (1, 4, 2, 2) and torch.equal(single[0], hot[0])
    with pytest.raises(ValueError, match=r"\[4, 9\]"):
        one_hot(torch.tensor([[0, 4], [9, 1]], dtype=torch.uint8))
    with pytest.raises(ValueError, match="integer"):
        one_hot(torch.zeros(2, 2))


def test_dice_and_lung_region():
    a = np.array([[1, 1, 0, 0]], dtype=bool)
    b = np.array([[1, 0, 0, 0]], dtype=bool)
    assert dice(a, b) == pytest.approx(2 / 3)
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert lung_region(torch.tensor([0, 1, 2, 3])).tolist() == [False, True, True, True]


def test_pad_resize_labels_keeps_exact_values_and_alignment():
    labels = np.zeros((10, 20), dtype=np.uint8)
    labels[:, 10:] = 3
    labels[3:7, 2:7] = 2
    out = pad_resize_labels(labels, 8)
    assert out.shape == (8, 8) and out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 2, 3}
    assert (out[:2] == 0).all() and (out[-2:] == 0).all()  # padding rows of the wide map
    assert (out[2:6, 4:] == 3).all()


# --------------------------------------------------------------------------- derived lung masks


def test_derived_lung_mask_matches_phantom(phantom):
    """Measured on phantoms of seeds 1, 3, 7 at 64-256 px: mean Dice 0.989-0.997, min 0.972 (with the
    infection mask). Thresholds leave room for other seeds; the covid slices are checked on their own."""
    scores = {"covid": [], "noncovid": []}
    for root in (phantom["root"], phantom["base"] / "p128" / "nifti"):
        for _, cls, image, truth, infection in _phantom_slices(root):
            scores[cls].append(dice(derive_lung_mask(image, infection), truth))
    everything = scores["covid"] + scores["noncovid"]
    assert len(everything) == 6 * 5 + 4 * 4 and len(scores["covid"]) == 3 * 5 + 2 * 4
    assert np.mean(everything) >= 0.97 and np.min(everything) >= 0.93
    assert np.mean(scores["covid"]) >= 0.97 and np.min(scores["covid"]) >= 0.93


def test_derived_lung_mask_when_lungs_touch_the_border(phantom):
    """COVID-SemiSeg crops: lungs touch the top and bottom border, no air ring around the patient."""
    scores = []
    for _, _, image, truth, infection in _phantom_slices(phantom["base"] / "p128" / "nifti"):
        rows, cols = np.nonzero(truth)
        crop = (slice(rows.min() + 1, rows.max()), slice(max(cols.min() - 4, 0), cols.max() + 5))
        mask = derive_lung_mask(image[crop], infection[crop])
        assert mask[0].any() and mask[-1].any()
        scores.append(dice(mask, truth[crop]))
    assert np.mean(scores) >= 0.97 and np.min(scores) >= 0.93


def test_derived_lung_mask_adds_lesions_and_handles_flat_images():
    flat = np.full((40, 40), 0.5, dtype=np.float32)
    assert not derive_lung_mask(flat).any()
    lesion = np.zeros((40, 40), np.uint8)
    lesion[5:9, 5:9] = 2
    assert derive_lung_mask(flat, lesion).sum() == 16
    with pytest.raises(ValueError, match="2-D"):
        derive_lung_mask(np.zeros((4, 4, 1)))


# --------------------------------------------------------------------------- preprocess_segmentation


def _infected_ids(root: Path, manifest: pd.DataFrame) -> set[str]:
    return {row["id"] for _, row in manifest.iterrows() if load_mask(root, row, "mask").any()}


def test_preprocess_segmentation_on_phantom(phantom, tmp_path):
    root, manifest_path = phantom["root"], phantom["manifest"]
    manifest = read_manifest(manifest_path)
    infected = _infected_ids(root, manifest)
    assert 0 < len(infected) < len(manifest)
    summary = preprocess_segmentation(manifest_path, root, tmp_path / "given", window=(-1000, 200), size=32,
                                      lung_mask="auto", progress=False)
    kept = set()
    for split in ("train", "val", "test"):
        data = load_segmentation_split(tmp_path / "given" / f"{split}.pt")
        n = len(data["ids"])
        assert data["images"].shape == (n, 1, 32, 32) and data["images"].dtype == torch.uint8
        assert data["labels"].shape == (n, 32, 32) and data["labels"].dtype == torch.uint8
        assert set(data["labels"].unique().tolist()) <= {0, 1, 2, 3}
        assert data["lung_source"] == ["given"] * n and len(data["patients"]) == n
        assert summary["counts"][split]["slices"] == n
        kept |= set(data["ids"])
        assert sum(summary["label_fractions"][split].values()) == pytest.approx(1.0 if n else 0.0)
    assert kept == infected  # only slices with lesions (require_infection)
    assert sum(c["dropped_without_infection"] for c in summary["counts"].values()) == len(manifest) - len(infected)
    assert "lung_dice" not in summary and summary["lung_mask"]["given"] == len(infected)

    # one slice against the building blocks: same image pipeline, labels = padded/resized label map
    train = load_segmentation_split(tmp_path / "given" / "train.pt")
    row = manifest.set_index("id").loc[train["ids"][0]].to_dict() | {"id": train["ids"][0]}
    image = load_image(root, row)
    expected = preprocess_slice(image, "HU", window=(-1000, 200), normalise_8bit="percentile", channels=1, size=32)
    assert torch.equal(train["images"][0], torch.from_numpy(expected))
    labels = pad_resize_labels(label_map(load_mask(root, row, "mask"), load_mask(root, row, "lung_mask")), 32)
    assert torch.equal(train["labels"][0], torch.from_numpy(labels))
    assert (train["labels"] >= 2).any()

    # derive mode: Dice against the given masks is recorded; labels agree with the given-mask labels
    derived = preprocess_segmentation(manifest_path, root, tmp_path / "derived", window=(-1000, 200), size=32,
                                      lung_mask="derive", progress=False)
    assert derived["lung_dice"]["n"] == len(infected) and derived["lung_dice"]["mean"] >= 0.95
    assert derived["lung_mask"]["derived"] == len(infected)
    other = load_segmentation_split(tmp_path / "derived" / "train.pt")
    assert other["ids"] == train["ids"] and set(other["lung_source"]) == {"derived"}
    agreement = (lung_region(other["labels"]) == lung_region(train["labels"])).float().mean()
    assert agreement >= 0.97
    # lesion pixels are identical whatever the lung mask
    assert torch.equal(other["labels"] >= 2, train["labels"] >= 2)

    everything = preprocess_segmentation(manifest_path, root, tmp_path / "all", size=32, require_infection=False,
                                         progress=False)
    assert sum(c["slices"] for c in everything["counts"].values()) == len(manifest)


def test_empty_train_split_is_an_error(phantom, tmp_path):
    manifest = read_manifest(phantom["manifest"])
    manifest.loc[(manifest["class"] == "covid") & (manifest["split"] == "train"), "split"] = "val"
    path = tmp_path / "manifest.csv"
    manifest.to_csv(path, index=False)
    with pytest.raises(InputDataError, match="no slices with infection in the train split"):
        preprocess_segmentation(path, phantom["root"], tmp_path / "out", size=32, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def paired_root(tmp_path, write_image, write_label_png) -> tuple[Path, Path]:
    """Three 8-bit images with lesion masks (paired_folder layout) and their manifest."""
    root = tmp_path / "paired"
    for k in range(3):
        write_image(root / "Imgs" / f"{k}.png", "L", (24, 20), seed=k)
        labels = np.zeros((20, 24), np.uint8)
        labels[5:10, 6:12] = 1 + k % 2
        write_label_png(root / "GT" / f"{k}.png", labels)
    manifest = tmp_path / "manifest.csv"
    ingest_dataset(root, {"format": "paired_folder", "split": {"fractions": {"train": 1.0}}}, manifest,
                   tmp_path / "skipped.csv")
    return root, manifest


def test_paired_folder_derives_lung_masks(paired_root, tmp_path):
    root, manifest = paired_root
    summary = preprocess_segmentation(manifest, root, tmp_path / "out", size=16, progress=False)
    train = load_segmentation_split(tmp_path / "out" / "train.pt")
    assert train["lung_source"] == ["derived"] * 3 and summary["lung_mask"]["derived"] == 3
    assert summary["counts"]["val"]["slices"] == 0
    assert load_segmentation_split(tmp_path / "out" / "val.pt")["images"].shape == (0, 1, 16, 16)
    with pytest.raises(InputDataError, match="no lung mask") as info:
        preprocess_segmentation(manifest, root, tmp_path / "given", size=16, lung_mask="given", progress=False)
    assert "Imgs/0.png" in str(info.value)
    assert not (tmp_path / "given").exists()


def test_mask_image_shape_mismatch_names_both_files(paired_root, tmp_path, write_label_png):
    root, manifest = paired_root
    write_label_png(root / "GT" / "1.png", np.zeros((21, 24), np.uint8))
    with pytest.raises(InputDataError) as info:
        preprocess_segmentation(manifest, root, tmp_path / "out", size=16, progress=False)
    assert "GT/1.png" in info.value.path and "Imgs/1.png" in info.value.problem
    assert not (tmp_path / "out").exists()


def test_missing_infection_mask_names_the_file(paired_root, tmp_path):
    root, manifest_path = paired_root
    manifest = read_manifest(manifest_path)
    manifest.loc[manifest["id"] == "2", "mask"] = ""
    manifest.to_csv(manifest_path, index=False)
    (tmp_path / "out").mkdir()
    with pytest.raises(InputDataError, match="this branch needs infection masks") as info:
        preprocess_segmentation(manifest_path, root, tmp_path / "out", size=16, progress=False)
    assert info.value.path.endswith("Imgs/2.png")
    assert not any((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- paired augmentation


def _pairs(n: int = 5, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Label maps with values {0, 1, 3} and images that encode them (label * 60 + 20)."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros((n, size, size), dtype=torch.uint8)
    for i in range(n):
        cx, cy, r = (torch.randint(8, size - 8, (3,), generator=gen)).tolist()
        labels[i][(xx - cx) ** 2 + (yy - cy) ** 2 < (r // 2 + 4) ** 2] = 1
        labels[i][(xx - cx) ** 2 + (yy - cy) ** 2 < 9] = 3
    images = (labels.to(torch.int32) * 60 + 20).to(torch.uint8)[:, None]
    return images, labels


def test_augment_pairs_shapes_originals_and_label_set():
    images, labels = _pairs()
    out_images, out_labels, source = augment_pairs(images, labels, 12, seed=4, rotation_deg=25.0)
    assert out_images.shape == (12, 1, 32, 32) and out_images.dtype == torch.uint8
    assert out_labels.shape == (12, 32, 32) and out_labels.dtype == torch.uint8
    assert source.dtype == torch.int64 and source.shape == (12,)
    assert torch.equal(source[:5], torch.arange(5))
    assert torch.equal(out_images[:5], images) and torch.equal(out_labels[:5], labels)
    assert set(out_labels.unique().tolist()) <= {0, 1, 3}
    assert sorted(source[5:10].tolist()) == list(range(5))  # sources cycle through the inputs
    assert not torch.equal(out_labels[5:], labels[source[5:]])
    # one grid for both: the image still encodes the label at nearly every pixel
    decoded = torch.round((out_images[5:, 0].float() - 20) / 60)
    assert (decoded == out_labels[5:].float()).float().mean() >= 0.9
    only_new = augment_pairs(images, labels, 3, seed=4, include_originals=False)
    assert only_new[0].shape == (3, 1, 32, 32) and len(set(only_new[2].tolist())) == 3


def test_augment_pairs_deterministic_and_independent_of_batch_size():
    images, labels = _pairs()
    first = augment_pairs(images, labels, 11, seed=7, batch_size=256)
    again = augment_pairs(images, labels, 11, seed=7, batch_size=256)
    batched = augment_pairs(images, labels, 11, seed=7, batch_size=2)
    other = augment_pairs(images, labels, 11, seed=8)
    for a, b, c in zip(first, again, batched):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(first[0][5:], other[0][5:])


def test_augment_pairs_identity_settings_reproduce_inputs():
    images, labels = _pairs()
    out_images, out_labels, source = augment_pairs(
        images, labels, 9, seed=1, scale=(1.0, 1.0), rotation_deg=0.0, noise_std=0.0, elastic_alpha=0.0,
        include_originals=False)
    assert torch.equal(out_images, images[source]) and torch.equal(out_labels, labels[source])


def test_augment_pairs_pads_labels_with_zero_and_image_with_minimum():
    images = torch.full((1, 1, 16, 16), 200, dtype=torch.uint8)
    images[0, 0, 0, 0] = 50
    labels = torch.full((1, 16, 16), 2, dtype=torch.uint8)
    out_images, out_labels, _ = augment_pairs(images, labels, 4, seed=0, rotation_deg=45.0, noise_std=0.0,
                                              elastic_alpha=0.0, scale=(1.0, 1.0), include_originals=False)
    outside = out_labels == 0
    assert outside.any() and set(out_labels.unique().tolist()) == {0, 2}
    # bilinear samples at least half a pixel outside: at most half of the inside value above the minimum
    assert (out_images[:, 0][outside] <= 125).all() and (out_images[:, 0][outside] == 50).any()


# --------------------------------------------------------------------------- composite


def test_composite_keeps_real_outside_the_lung():
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (3, 1, 8, 8), generator=gen, dtype=torch.uint8)
    synthetic = torch.randint(0, 256, (3, 1, 8, 8), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 4, (3, 8, 8), generator=gen, dtype=torch.uint8)
    lung = lung_region(labels)
    out = composite(real, synthetic, lung)
    assert out.dtype == torch.uint8 and out.shape == real.shape
    assert torch.equal(out[:, 0][~lung], real[:, 0][~lung])
    assert torch.equal(out[:, 0][lung], synthetic[:, 0][lung])
    with pytest.raises(ValueError):
        composite(real, synthetic, lung[:2])


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_covid_semiseg_derived_lung_masks(realdata_dir, tmp_path):
    """Measured on the 50 training slices: 76% of GT lesion pixels (pooled; median per slice 88%) fall in the
    mask derived without the GT, lung area 55% of the image; dense consolidation is what it misses."""
    root = realdata_dir / "covid-semiseg" / "train"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    manifest_path = tmp_path / "manifest.csv"
    manifest = ingest_dataset(root, {"format": "paired_folder"}, manifest_path, tmp_path / "skipped.csv")
    summary = preprocess_segmentation(manifest_path, root, tmp_path / "out", size=64, progress=False)
    assert summary["lung_mask"]["derived"] == sum(c["slices"] for c in summary["counts"].values()) > 0
    assert "lung_dice" not in summary
    train = load_segmentation_split(tmp_path / "out" / "train.pt")
    lung_share = lung_region(train["labels"]).float().mean()
    assert 0.3 <= lung_share <= 0.8
    inside, total, per_slice = 0, 0, []
    for _, row in manifest.iterrows():
        lesion = load_mask(root, row, "mask") > 0
        mask = derive_lung_mask(lung_mask_image(load_image(root, row), row["unit"]))  # without the GT
        inside += int((mask & lesion).sum())
        total += int(lesion.sum())
        per_slice.append((mask & lesion).sum() / max(lesion.sum(), 1))
        assert 0.03 <= mask.mean() <= 0.85  # 54.jpg (nearly all consolidated) has 5% without its GT
    assert inside / total >= 0.65 and np.median(per_slice) >= 0.75
