"""Data layer: dataset readers, the manifest and splits, preprocessing into cached tensors, label maps.

Nothing here imports torch models or training; every stage above reads what this layer writes."""
