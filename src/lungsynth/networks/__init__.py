"""Network definitions: small composable ``nn.Module`` blocks with explicit constructor arguments."""

from lungsynth.networks.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from lungsynth.networks.densenet import DenseNetClassifier

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "DenseNetClassifier", "dcgan_init_"]

from lungsynth.networks.lus_gan import ImprovedLUSGenerator, LUSGenerator, PackedDiscriminator  # noqa: E402

__all__ += ["ImprovedLUSGenerator", "LUSGenerator", "PackedDiscriminator"]

from lungsynth.networks.cgan import (  # noqa: E402
    DESUM,
    DFMWeighting,
    GlobalGenerator,
    GlobalLocalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    PatchDiscriminator,
    SEANGenerator,
    SPADEGenerator,
    UNetGenerator,
)

__all__ += ["DESUM", "DFMWeighting", "GlobalGenerator", "GlobalLocalGenerator", "LocalEnhancer",
            "MultiscaleDiscriminator", "PatchDiscriminator", "SEANGenerator", "SPADEGenerator", "UNetGenerator"]
