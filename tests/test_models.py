"""DCGAN and DenseNet shapes and parameter counts."""

import pytest
import torch

from lungsynth.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from lungsynth.networks.densenet import DenseNetClassifier
from lungsynth.networks.dcgan import count_parameters

PAPER_G = (3072, 1536, 768, 384, 192)
PAPER_D = (192, 384, 768, 1536, 3072)


@pytest.mark.parametrize(("size", "channels", "widths"), [(64, 1, (256, 128, 64, 32)), (32, 3, (64, 32, 16)), (224, 3, (32, 16, 16, 8, 8))])
def test_generator_and_discriminator_shapes(size, channels, widths):
    generator = DCGANGenerator(latent_dim=20, out_channels=channels, image_size=size, widths=widths)
    discriminator = DCGANDiscriminator(in_channels=channels, image_size=size, widths=widths[::-1])
    images = generator(torch.randn(3, 20))
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3,)


def test_paper_widths_parameter_counts():
    """The widths seed 000 lists give these counts (the paper's ~30 M / ~5 M do not match them)."""
    with torch.device("meta"):
        generator = DCGANGenerator(100, 3, 224, PAPER_G)
        discriminator = DCGANDiscriminator(3, 224, PAPER_D)
    assert generator.project[0].out_features == 150528  # "100 input features and 150528 output features"
    assert count_parameters(generator) == 115_344_003
    assert count_parameters(discriminator) == 100_441_537


def test_size_must_match_widths():
    with pytest.raises(ValueError, match="divisible"):
        DCGANGenerator(100, 1, 60, (64, 32, 16, 8))


def test_densenet_takes_gray_and_rgb():
    model = DenseNetClassifier(num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 2)
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 2)


def test_densenet_loads_user_weights(tmp_path):
    from torchvision.models import densenet169

    reference = densenet169(weights=None)
    path = tmp_path / "imagenet_like.pth"
    torch.save(reference.state_dict(), path)
    model = DenseNetClassifier(num_classes=2, weights=path)
    assert torch.equal(model.net.features.conv0.weight, reference.features.conv0.weight)
    assert model.net.classifier.out_features == 2


def test_dcgan_discriminator_spectral_norm_replaces_batch_norm():
    from torch import nn
    from torch.nn.utils import parametrize
    from lungsynth.networks.dcgan import DCGANDiscriminator

    paper = DCGANDiscriminator(in_channels=1, image_size=64, widths=(8, 16, 32, 64))
    normed = DCGANDiscriminator(in_channels=1, image_size=64, widths=(8, 16, 32, 64), spectral_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in normed.modules())
    layers = [m for m in normed.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert normed(torch.zeros(4, 1, 64, 64)).shape == (4,)
