"""Standing batch-norm statistics (lungsynth.networks.batch_norm)."""

import torch
from torch import nn

from lungsynth.networks.batch_norm import batch_norm_layers, standing_statistics
from lungsynth.networks.dcgan import DCGANGenerator


def _latents(rng: torch.Generator) -> torch.Tensor:
    return torch.randn(8, 4, generator=rng)


def _on_latents(net):
    return lambda rng: net(_latents(rng))


def test_running_statistics_become_the_average_of_the_batch_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    net[1].running_mean.fill_(100.0)  # stale statistics from "other weights"
    rng = torch.Generator().manual_seed(5)
    batches = [_latents(rng) for _ in range(3)]
    with torch.no_grad():
        features = [net[0](b) for b in batches]
    want_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    want_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)

    assert standing_statistics(net, _on_latents(net), 3, torch.Generator().manual_seed(5)) == 1
    torch.testing.assert_close(net[1].running_mean, want_mean)
    torch.testing.assert_close(net[1].running_var, want_var)
    assert net[1].momentum == 0.1 and not net.training


def test_dropout_stays_off_and_the_result_is_seed_deterministic():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.9), nn.BatchNorm1d(16))
    copy = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.9), nn.BatchNorm1d(16))
    copy.load_state_dict(net.state_dict())
    standing_statistics(net, _on_latents(net), 4, torch.Generator().manual_seed(1))
    standing_statistics(copy, _on_latents(copy), 4, torch.Generator().manual_seed(1))
    assert torch.equal(net[2].running_mean, copy[2].running_mean)
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():  # without dropout the mean is that of the linear layer's outputs
        want = torch.stack([net[0](_latents(rng)).mean(0) for _ in range(4)]).mean(0)
    torch.testing.assert_close(net[2].running_mean, want)


def test_a_generator_without_batch_norm_is_left_alone():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert standing_statistics(net, _on_latents(net), 2, torch.Generator()) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_dcgan_generator_layers_are_all_recalibrated():
    generator = DCGANGenerator(latent_dim=8, out_channels=1, image_size=16, widths=(16, 8))
    layers = batch_norm_layers(generator)
    assert len(layers) == 2
    n = standing_statistics(generator, lambda g: generator(torch.randn(4, 8, generator=g)), 2, torch.Generator().manual_seed(0))
    assert n == 2 and all(int(layer.num_batches_tracked) == 2 for layer in layers)
