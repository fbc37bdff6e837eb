"""Network definitions: small composable ``nn.Module`` blocks with explicit constructor arguments.

One module per family: :mod:`.dcgan` (seed 000), :mod:`.lus_gan` (seed 003), :mod:`.cgan` (seed 001
and its comparators), :mod:`.densenet` (the COVID classifier), :mod:`.unet` (the segmentation
study), :mod:`.feature_extractor` (features of FID / KID). Networks take and return tensors only;
training lives in :mod:`lungsynth.tasks` and :mod:`lungsynth.methods`.
"""
