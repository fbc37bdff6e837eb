"""Preprocessing conversions and seed 000's set scoring."""

import numpy as np
import pytest
import torch
from torch import nn

from lungsynth.data.preprocess import convert_channels, pad_square_resize, preprocess_slice, to_unit_range
from lungsynth.methods.dcgan.score import score_sets
from lungsynth.data.preprocess import decode_uint8


def test_hu_window_maps_to_unit_range():
    image = np.array([[-1000.0, -600.0], [450.0, 3000.0]], dtype=np.float32)[:, :, None]
    out = to_unit_range(image, "HU", (-600, 1500), "none")
    assert out[:, :, 0].ravel().tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0])


def test_8bit_normalisation_modes():
    image = np.linspace(50, 150, 100, dtype=np.float32).reshape(10, 10, 1)
    assert to_unit_range(image, "8bit", (0, 1), "none").max() == pytest.approx(150 / 255)
    assert to_unit_range(image, "8bit", (0, 1), "minmax").min() == 0.0
    assert to_unit_range(image, "8bit", (0, 1), "minmax").max() == 1.0
    stretched = to_unit_range(image, "8bit", (0, 1), "percentile")
    assert stretched.min() == 0.0 and stretched.max() == 1.0


def test_channel_conversion_and_square_resize():
    rgb = np.zeros((20, 10, 3), dtype=np.float32)
    rgb[2:18, 2:8, 0] = 1.0
    gray = convert_channels(rgb, 1)
    assert gray.shape == (20, 10, 1) and gray.max() == pytest.approx(0.299)
    assert convert_channels(gray, 3).shape == (20, 10, 3)
    square = pad_square_resize(gray, 8)
    assert square.shape == (8, 8, 1)
    # padding uses the image minimum (0) left and right of the tall image
    assert square[:, 0, 0].max() < 0.1 and square[4, 4, 0] > 0.2


def test_preprocess_slice_is_uint8_and_decodes_to_minus_one_one():
    image = np.full((16, 16, 1), 1500.0, dtype=np.float32)
    image[:8] = -1000.0
    out = preprocess_slice(image, "HU", window=(-600, 1500), normalise_8bit="none", channels=1, size=8)
    assert out.dtype == np.uint8 and out.shape == (1, 8, 8)
    decoded = decode_uint8(torch.from_numpy(out))
    assert decoded.min() == -1.0 and decoded.max() == 1.0


class BrightIsPositive(nn.Module):
    """Stand-in classifier: class 0 ('covid') when the mean intensity is above 0."""

    def __init__(self):
        super().__init__()
        self.net = nn.Module()
        self.net.classifier = nn.Linear(1, 2)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) * self.scale
        return torch.stack([m, -m], dim=1)


def test_score_sets_counts_and_reference():
    bright = torch.full((40, 1, 8, 8), 250, dtype=torch.uint8)
    dark = torch.full((40, 1, 8, 8), 5, dtype=torch.uint8)
    mixed = torch.cat([bright[:12], dark[:28]])  # 30% bright
    test = {"images": torch.cat([bright[:10], dark[:10]]), "labels": torch.tensor([0] * 10 + [1] * 10),
            "classes": ["covid", "noncovid"]}
    sets, summary = score_sets(BrightIsPositive(), ["covid", "noncovid"], "covid", {"covid": mixed, "noncovid": dark},
                               test, n_sets=4, set_size=10)
    synth = sets[(sets.source == "synthetic") & (sets["class"] == "covid")]
    assert list(synth["n"]) == [10, 10, 10, 10]
    assert list(synth["n_predicted_positive"]) == [10, 2, 0, 0]
    row = summary[(summary.source == "synthetic") & (summary["class"] == "covid")].iloc[0]
    assert row["mean_share_positive"] == pytest.approx(0.3)
    assert row["pooled_share_positive"] == pytest.approx(0.3)
    real = summary[(summary.source == "real") & (summary["class"] == "covid")].iloc[0]
    assert real["pooled_share_positive"] == 1.0 and real["n_images"] == 10
    real_non = summary[(summary.source == "real") & (summary["class"] == "noncovid")].iloc[0]
    assert real_non["pooled_share_positive"] == 0.0


def test_score_sets_needs_enough_images():
    with pytest.raises(ValueError, match="needed"):
        score_sets(BrightIsPositive(), ["covid", "noncovid"], "covid",
                   {"covid": torch.zeros((5, 1, 8, 8), dtype=torch.uint8)},
                   {"images": torch.zeros((0, 1, 8, 8), dtype=torch.uint8), "labels": torch.zeros(0, dtype=torch.long),
                    "classes": ["covid", "noncovid"]}, n_sets=2, set_size=4)
