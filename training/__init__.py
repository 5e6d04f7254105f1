"""Offline side of the soft sensor: data, the masked network, pruning, training, export."""
