"""The serving side of the soft sensor, and the contracts training shares with it.

Nothing here imports torch: the serving image does not ship it.
"""
