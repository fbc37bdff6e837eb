"""Downstream task models trained on real (and synthetic) data: the classifier, the U-Net, the feature extractor.

Each trains on the shared loop of :mod:`lungsynth.engine`; the methods and the studies use them."""
