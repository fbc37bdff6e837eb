"""Seed 000's DCGAN: one model per class, validated by the DenseNet-169 classifier."""
