"""Seed 001's conditional GANs (label map -> CT slice) and its comparators and ablations."""
