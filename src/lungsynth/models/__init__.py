"""Network definitions: small composable ``nn.Module`` blocks with explicit constructor arguments."""

from .dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from .densenet import DenseNetClassifier

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "DenseNetClassifier", "dcgan_init_"]
