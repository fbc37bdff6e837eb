"""U-Net for the segmentation study: shapes, losses, training, exact resume, save/load."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lungsynth.networks.dcgan import count_parameters
from lungsynth.networks.unet import UNet
from lungsynth.tasks.segmentation import (
    UNetSettings,
    dice_loss,
    load_unet,
    predict_unet,
    save_unet,
    segmentation_target,
    train_unet,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shapes(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.ones(n, size, size, dtype=torch.uint8)
    for i in range(n):
        y, x = torch.randint(4, size - 12, (2,), generator=g).tolist()
        labels[i, y : y + 8, x : x + 8] = 2 + i % 2
    images = (labels.float() * 60 + torch.rand(n, size, size, generator=g) * 20).to(torch.uint8)[:, None]
    return images, labels


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_unet_shapes(depth):
    out = UNet(1, 3, width=4, depth=depth)(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 3, 32, 32)


def test_unet_parameter_count_by_hand():
    w = 2  # depth 1: down convs 1->2->2, 2->4->4; up convT 4->2; merge 4->2->2; head 2->3
    double = lambda i, o: i * o * 9 + 2 * o + o * o * 9 + 2 * o  # noqa: E731  (bias-free convs + BN)
    expected = double(1, w) + double(w, 2 * w) + (2 * w * w * 4 + w) + double(2 * w, w) + (w * 3 + 3)
    assert count_parameters(UNet(1, 3, width=w, depth=1)) == expected


def test_unet_side_must_divide():
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet(1, 3, width=2, depth=3)(torch.zeros(1, 1, 20, 20))


def test_targets_and_dice_loss():
    assert segmentation_target(torch.tensor([[0, 1, 2, 3]], dtype=torch.uint8)).tolist() == [[0, 0, 1, 2]]
    target = torch.tensor([[[0, 1], [2, 2]]])
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 100
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 3, 2, 2)  # p = 1/3 everywhere: class c has n_c pixels
    expected = sum(1 - (2 * n / 3 + 1) / (4 / 3 + n + 1) for n in (1, 1, 2)) / 3
    assert dice_loss(uniform, target).item() == pytest.approx(expected)


def test_training_learns_resumes_exactly_and_round_trips(tmp_path):
    images, labels = _shapes()
    settings = UNetSettings(epochs=30, batch_size=8, lr=3e-3, checkpoint_every=25, device="cpu")
    config = {"width": 4, "depth": 2}
    full = train_unet(images, labels, config, settings, tmp_path / "a", progress=False)
    losses = pd.read_csv(full["loss_csv"])
    assert losses["loss"].iloc[-3:].mean() < losses["loss"].iloc[:3].mean()
    cut = train_unet(images, labels, config, settings, tmp_path / "b", progress=False, stop_after=27)
    assert cut["stopped_at"] == 27
    resumed = train_unet(images, labels, config, settings, tmp_path / "b", progress=False)
    assert resumed["resumed_from"] == 25
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    save_unet(tmp_path / "m.pt", full)
    model = load_unet(tmp_path / "m.pt")
    pred = predict_unet(model, images)
    assert pred.shape == labels.shape and pred.dtype == torch.uint8
    assert torch.equal(pred, predict_unet(load_unet(tmp_path / "m.pt"), images))
    lesion = segmentation_target(labels) > 0
    assert (pred[lesion] > 0).float().mean() > 0.3  # lesions are 6% of pixels: far above chance after 60 steps
    with pytest.raises(ValueError, match="no training slices"):
        train_unet(images[:0], labels[:0], config, settings, tmp_path / "c")
