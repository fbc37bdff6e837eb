"""DenseNet-169 classifier training: BN recalibration, learning a separable problem, class order."""

import torch
from torch import nn

from lungsynth.tasks.classifier import load_classifier, predict_proba, recalibrate_batchnorm, save_classifier, train_classifier
from lungsynth.data.preprocess import decode_uint8


def test_recalibrate_batchnorm_sets_exact_statistics():
    conv = nn.Conv2d(1, 3, 3, bias=False)
    norm = nn.BatchNorm2d(3)
    model = nn.Sequential(conv, norm)
    norm.running_mean.fill_(100.0)
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    recalibrate_batchnorm(model, images, batch_size=10)
    with torch.no_grad():
        features = conv(decode_uint8(images))
    assert torch.allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(norm.running_var, features.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)
    assert norm.momentum == 0.1


def _split(n_per_class: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (2 * n_per_class, 1, 32, 32), generator=gen, dtype=torch.uint8)
    images[:n_per_class, :, 8:24, 8:24] += 150  # class 0 ('covid') has a bright square
    labels = torch.tensor([0] * n_per_class + [1] * n_per_class)
    return {"images": images, "labels": labels, "classes": ["covid", "noncovid"]}


def test_classifier_learns_a_separable_problem_and_keeps_class_order(tmp_path):
    torch.set_num_threads(2)
    train, val = _split(24, 0), _split(8, 1)
    model, history = train_classifier(train, val, positive_class="covid", epochs=3, batch_size=16, lr=1e-3,
                                      device="cpu", progress=False)
    assert max(h["val_auc"] for h in history) > 0.9
    assert sum(bool(h.get("selected")) for h in history) >= 1
    save_classifier(tmp_path / "m.pt", model, train["classes"], "covid")
    loaded, classes, positive = load_classifier(tmp_path / "m.pt")
    assert classes == ["covid", "noncovid"] and positive == "covid"
    probabilities = predict_proba(loaded, val["images"])
    assert probabilities[:8, 0].mean() > probabilities[8:, 0].mean()
