"""Batched, seed-controlled image transforms on tensors (augmentations used in training)."""
